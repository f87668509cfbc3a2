"""CPU cost of sealing one submit, Appendix B.2 (pyjson-sha256) against RFC 8785 (jcs-sha256).

    python -m bench.sealing [--runs 7] [--number 2000]

In-process, single-threaded and timed in process CPU time, so a shared, busy machine disturbs
it far less than an HTTP throughput run (caches and frequency still move it): what a submit's `job_submitted` costs to seal (payload text + chain hash, as
`event_store.seal` does) and its `jobs` row's JSON columns, per call, min / median / max of
`--runs` timeit repeats. "pyjson" is the v1.0 code path (`legacy_json`, the hash over it);
"jcs" is v1.1's (`seal_payload`, RFC 8785 hash). Payloads: the bench's trivial manifest, the
prime-sweep example bundle's manifest (larger), and the trivial one with floats in its inputs
(RFC 8785 writes those in the slower walk, not the C encoder).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import timeit
from pathlib import Path
from typing import Any

from app.domain.canonical import JCS, PYJSON, event_hash, legacy_json, seal_payload
from app.domain.job import submitted_payload
from app.domain.manifest import normalize_manifest
from bench.common import trivial_manifest

ROOT = Path(__file__).resolve().parents[1]
STREAM = "bench_trivial-1765000000000-0123456789ab"
FIELDS = {"prev_hash": "", "stream_id": STREAM, "sequence": 1, "event_id": "6f1c2d3e-0000-4000-8000-000000000001",
          "type_": "job_submitted", "timestamp": "2026-12-06T07:00:00.000Z", "agent_id": None}


def payloads() -> dict[str, dict[str, Any]]:
    floats = trivial_manifest()
    floats["initial_inputs"] = {"router": [{"n": 1.0, "x": 0.25, "big": 1e16, "tiny": 1e-7} for _ in range(4)]}
    sweep = json.loads((ROOT / "examples" / "prime_sweep_4_workers" / "manifest.json").read_text())
    cases = {"trivial manifest": trivial_manifest(), "prime_sweep manifest": sweep, "trivial + floats": floats}
    return {
        name: submitted_payload(manifest=normalize_manifest(raw), bundle=None, idempotency_key="k-1",
                                request_sha256="a" * 64)
        for name, raw in cases.items()
    }


def seal_pyjson(payload: dict[str, Any]) -> str:
    text = legacy_json(payload)
    return event_hash(**FIELDS, payload=payload, payload_json=text, hash_alg=PYJSON)


def seal_jcs(payload: dict[str, Any]) -> str:
    text, value = seal_payload(payload)
    return event_hash(**FIELDS, payload=value, payload_json=text, hash_alg=JCS)


def measure(fn: Any, payload: dict[str, Any], runs: int, number: int) -> list[float]:
    """Microseconds per call, one figure per run."""
    # CPU time of this process, not wall time: on a shared machine the wall clock also counts the
    # time other processes held the core.
    timings = timeit.repeat(lambda: fn(payload), repeat=runs, number=number, timer=time.process_time)
    return [t / number * 1e6 for t in timings]


def spread(values: list[float]) -> str:
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sealing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args(argv)
    print("| payload | bytes | pyjson µs (min / median / max) | jcs µs (min / median / max) | jcs / pyjson (median of pairs) |")
    print("|---|---|---|---|---|")
    for name, payload in payloads().items():
        # Old and new in turn (A B A B ...), the ratio taken pair by pair: the machine's speed
        # drifts between runs, much less within one pair.
        old: list[float] = []
        new: list[float] = []
        for _ in range(args.runs):
            old += measure(seal_pyjson, payload, 1, args.number)
            new += measure(seal_jcs, payload, 1, args.number)
        ratio = statistics.median(n / o for n, o in zip(new, old, strict=True))
        print(f"| {name} | {len(legacy_json(payload))} | {spread(old)} | {spread(new)} | {ratio:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
