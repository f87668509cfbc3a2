#!/usr/bin/env python3
"""Verify a MirrorNeuron job's hash chain over HTTP, sharing no code with the server.

    pip install rfc8785
    python verify_chain.py <job_id> [--url http://127.0.0.1:4000] [--token TOKEN]

Reads GET /api/v1/jobs/{job_id}/events (NDJSON) and recomputes every event's hash (SPEC §1.3,
Appendix C.1): the SHA-256 of the canonical JSON of {agent_id, event_id, payload, prev_hash,
sequence, stream_id, timestamp, type}, with prev_hash the previous event's stored hash ("" for
sequence 1) and stream_id the job id. The canonical form is the event's `hash_alg`:

* `jcs-sha256` (events written from v1.1 on): RFC 8785, here by the `rfc8785` package. Numbers
  are doubles: an integer beyond ±(2^53-1) is read as the nearest double, as JSON.parse does.
* `pyjson-sha256` (events written before): Python's json.dumps with sorted keys, no whitespace
  and UTF-8 kept, over the payload read with exact integers.

`pyjson-sha256` events may only come before `jcs-sha256` ones. Prints `OK ...` and exits 0, or
names the first bad sequence (`BAD <sequence>: <reason>`) and exits 1; 2 when the server cannot
be read. The token defaults to $MIRROR_NEURON_API_TOKEN.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any

import rfc8785

JCS, PYJSON = "jcs-sha256", "pyjson-sha256"
MAX_SAFE_INTEGER = 2**53 - 1


def as_doubles(value: Any) -> Any:
    """The value as an I-JSON reader holds it: integers beyond ±(2^53-1) become doubles."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else float(value)
    if isinstance(value, list):
        return [as_doubles(item) for item in value]
    if isinstance(value, dict):
        return {key: as_doubles(item) for key, item in value.items()}
    return value


def hash_text(record: dict[str, Any], prev_hash: str) -> bytes:
    """The bytes an event's hash is computed over, in the form its hash_alg names."""
    fields = {
        "agent_id": record["agent_id"], "event_id": record["event_id"], "payload": record["payload"],
        "prev_hash": prev_hash, "sequence": record["sequence"], "stream_id": record["job_id"],
        "timestamp": record["timestamp"], "type": record["type"],
    }
    if record["hash_alg"] == JCS:
        return rfc8785.dumps(as_doubles(fields))
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def verify(records: Iterable[dict[str, Any]]) -> tuple[int, str, tuple[int, str] | None]:
    """(events checked, head hash, None) or (..., (first bad sequence, reason))."""
    prev, count, seen_jcs = "", 0, False
    for count, record in enumerate(records, start=1):
        sequence = record.get("sequence")
        if sequence != count:
            where = sequence if isinstance(sequence, int) else count
            return count, prev, (where, f"expected sequence {count}, found {sequence}")
        alg = record.get("hash_alg")
        if alg not in (JCS, PYJSON):
            return count, prev, (sequence, f"unknown hash_alg {json.dumps(alg)}")
        if alg == PYJSON and seen_jcs:
            return count, prev, (sequence, "pyjson-sha256 event after a jcs-sha256 event")
        seen_jcs = seen_jcs or alg == JCS
        try:
            recomputed = hashlib.sha256(hash_text(record, prev)).hexdigest()
        except (TypeError, ValueError) as exc:
            return count, prev, (sequence, f"payload cannot be canonicalised: {exc}")
        if recomputed != record["hash"]:
            return count, prev, (sequence, f"hash mismatch: recorded {record['hash']}, recomputed {recomputed}")
        prev = record["hash"]
    return count, prev, None


def events(base_url: str, job_id: str, token: str | None) -> Iterator[dict[str, Any]]:
    """Every event of the job, one NDJSON line at a time."""
    url = f"{base_url.rstrip('/')}/api/v1/jobs/{urllib.parse.quote(job_id, safe='')}/events"
    request = urllib.request.Request(url, headers={"Accept": "application/x-ndjson"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=60) as response:
        for line in response:
            if line.strip():
                yield json.loads(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a job's event hash chain over HTTP.")
    parser.add_argument("job_id")
    parser.add_argument("--url", default="http://127.0.0.1:4000", help="server base URL")
    parser.add_argument("--token", default=os.environ.get("MIRROR_NEURON_API_TOKEN"), help="bearer token")
    args = parser.parse_args(argv)
    try:
        count, head, bad = verify(events(args.url, args.job_id, args.token))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"cannot read the events of {args.job_id}: {exc}", file=sys.stderr)
        return 2
    if bad is not None:
        print(f"BAD {bad[0]}: {bad[1]}")
        return 1
    if count == 0:
        print(f"BAD 1: {args.job_id} has no events")
        return 1
    print(f"OK {count} events, head {head}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
