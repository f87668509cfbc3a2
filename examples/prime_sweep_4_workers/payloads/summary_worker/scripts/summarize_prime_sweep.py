"""Summarise the prime sweep from the collector's result and complete the job with it.

Reads MIRROR_NEURON_INPUT_FILE: {"messages": [executor output payloads], "count", "last_message"};
each message's sandbox.stdout is the JSON printed by check_prime_range.py.
"""

from __future__ import annotations

import json
import os
import sys


def load_chunks(collection: dict) -> list[dict]:
    chunks = []
    for message in collection.get("messages") or []:
        stdout = ((message or {}).get("sandbox") or {}).get("stdout") or ""
        chunks.append(json.loads(stdout))
    return sorted(chunks, key=lambda chunk: chunk["range_start"])


def summarise(chunks: list[dict]) -> dict:
    primes = sorted(prime for chunk in chunks for prime in chunk["primes"])
    return {
        "mode": "prime_sweep",
        "worker_count": len(chunks),
        "checked_numbers": sum(chunk["checked_numbers"] for chunk in chunks),
        "prime_count": len(primes),
        "range_start": min((chunk["range_start"] for chunk in chunks), default=None),
        "range_end": max((chunk["range_end"] for chunk in chunks), default=None),
        "first_25_primes": primes[:25],
        "last_25_primes": primes[-25:],
        "chunks": [
            {
                "worker_id": chunk["worker_id"],
                "range_start": chunk["range_start"],
                "range_end": chunk["range_end"],
                "prime_count": chunk["prime_count"],
            }
            for chunk in chunks
        ],
    }


def main() -> int:
    with open(os.environ["MIRROR_NEURON_INPUT_FILE"], encoding="utf-8") as handle:
        collection = json.load(handle)
    print(json.dumps({"complete_job": summarise(load_chunks(collection))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
