"""The console's JavaScript chain verifier under `node --test`, against chains built here with the
`rfc8785` package and hashlib alone (nothing from `app/`), so neither side checks itself.

The server's own histories go through the same verifier in tests/e2e/test_verifiers.py.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import math
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
import rfc8785

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (.ci/run installs nodejs)")
JOB = "verify_v1-1711623600000-1c50c86dc919"


def run_node_tests(cases: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`node --test tests/js/` with the cases file; returns the finished process."""
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases, ensure_ascii=False))
    return subprocess.run(
        [str(NODE), "--test", "tests/js/"], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "VERIFY_CHAIN_CASES": str(path)},
    )


def _hash_input(record: dict[str, Any], prev: str, alg: str) -> bytes:
    fields = {
        "prev_hash": prev, "stream_id": record["job_id"], "sequence": record["sequence"],
        "event_id": record["event_id"], "type": record["type"], "timestamp": record["timestamp"],
        "agent_id": record["agent_id"], "payload": record["payload"],
    }
    if alg == "jcs-sha256":
        return rfc8785.dumps(fields)
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain(payloads: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """API event records of one job, each `(hash_alg, payload)` hashed as its algorithm says."""
    records, prev = [], ""
    for sequence, (alg, payload) in enumerate(payloads, start=1):
        record = {
            "sequence": sequence, "position": 100 + sequence, "event_id": f"00000000-0000-4000-8000-{sequence:012d}",
            "job_id": JOB, "type": "custom_event", "timestamp": f"2024-03-28T11:00:00.{sequence:03d}Z",
            "agent_id": None if sequence == 1 else "worker", "payload": copy.deepcopy(payload), "hash_alg": alg,
        }
        record["hash"] = prev = hashlib.sha256(_hash_input(record, prev, alg)).hexdigest()
        records.append(record)
    return records


def random_double(rng: random.Random) -> float:
    while True:
        value: float = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            return value


def random_text(rng: random.Random) -> str:
    pools = ["\x00\x08\t\n\x0c\r\x1f\"\\/\x7f", "abcXYZ09", "éß€\u2028\ufb33\uffff", "\U0001f600\U00010000\U0010ffff"]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(0, 6)))


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return random_double(rng)
    if kind == 1:
        return rng.choice([-1, 1]) * 10 ** rng.uniform(-330, 308)
    if kind == 2:
        return rng.randint(-(2**53) + 1, 2**53 - 1)
    if kind == 3:
        return random_text(rng)
    if kind == 4:
        return rng.choice([None, True, False, 0.0, -0.0, 1.0, 1e21, 1e-7, 5e-324])
    if kind == 5:
        return round(rng.uniform(-1e6, 1e6), rng.randint(0, 8))
    if kind == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {random_text(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def canonical_vectors(count: int) -> list[dict[str, str]]:
    rng = random.Random(8785)
    values = [random_value(rng) for _ in range(count)]
    return [{"input": json.dumps(v, ensure_ascii=False), "expected": rfc8785.dumps(v).decode()} for v in values]


FLOATS = {"ratio": 0.1, "one": 1.0, "big": 1e16, "small": 1e-7, "astral": {"\U0001f600": 1, "\ufb33": 2}}


def chain_cases() -> list[dict[str, Any]]:
    jcs = [("jcs-sha256", {"n": i, "text": "line\n\"quoted\" \u2028 é", **FLOATS}) for i in range(4)]
    plain_legacy = [("pyjson-sha256", {"node": "n1", "n": i}) for i in range(3)]
    float_legacy = [("pyjson-sha256", {"value": 1.0, "tiny": 1e-05})]
    crossing = chain(plain_legacy + float_legacy + jcs)
    tampered = json.loads(json.dumps(crossing))
    tampered[5]["payload"]["n"] = 99
    flipped = chain(plain_legacy + jcs)
    flipped[5]["hash_alg"] = "pyjson-sha256"  # a jcs event relabelled after another jcs event
    forged_legacy = chain(plain_legacy + jcs)
    forged_legacy[1]["payload"]["node"] = "forged"
    gap = chain(jcs)
    del gap[1]
    unknown = chain(jcs)
    unknown[2]["hash_alg"] = "md5"
    broken_link = chain(jcs)
    broken_link[2]["hash"] = "0" * 64
    relabelled = chain(jcs)
    relabelled[0]["hash_alg"] = "pyjson-sha256"  # 1e-7 and astral keys: text json.dumps never writes
    same_bytes = chain([("jcs-sha256", {"n": 1, "big": 1e21})] + jcs)
    same_bytes[0]["hash_alg"] = "pyjson-sha256"  # both forms write these bytes: nothing to detect
    return [
        {"name": "jcs events with floats, escapes and astral keys", "events": chain(jcs),
         "expect": {"ok": True, "count": 4, "verified": 4, "legacy": [], "firstBad": None}},
        {"name": "a history crossing from pyjson to jcs", "events": crossing,
         "expect": {"ok": True, "count": 8, "verified": 7, "legacy": [4], "head": crossing[-1]["hash"], "firstBad": None}},
        {"name": "a changed jcs payload is named", "events": tampered,
         "expect": {"ok": False, "firstBad": {"sequence": 6}}},
        {"name": "a changed legacy payload is named as unchecked, not passed", "events": forged_legacy,
         "expect": {"ok": True, "legacy": [2], "verified": 6}},
        {"name": "pyjson after jcs is tampering", "events": flipped,
         "expect": {"ok": False, "firstBad": {"sequence": 6}}},
        {"name": "a missing sequence", "events": gap, "expect": {"ok": False, "firstBad": {"sequence": 3}}},
        {"name": "an unknown hash_alg", "events": unknown, "expect": {"ok": False, "firstBad": {"sequence": 3}}},
        {"name": "a rewritten stored hash breaks the next link", "events": broken_link,
         "expect": {"ok": False, "firstBad": {"sequence": 3}}},
        {"name": "a jcs event relabelled pyjson is named", "events": relabelled,
         "expect": {"ok": False, "firstBad": {"sequence": 1}}},
        {"name": "a label flipped where both forms write the same bytes changes nothing", "events": same_bytes,
         "expect": {"ok": True, "verified": 5, "legacy": []}},
    ]


# The stand-alone Python verifier checks pyjson events too: it names every case the JavaScript
# one names, and the changed legacy payload as well (None: the history verifies).
PYTHON_FIRST_BAD = {
    "jcs events with floats, escapes and astral keys": None,
    "a history crossing from pyjson to jcs": None,
    "a changed jcs payload is named": 6,
    "a changed legacy payload is named as unchecked, not passed": 2,
    "pyjson after jcs is tampering": 6,
    "a missing sequence": 3,
    "an unknown hash_alg": 3,
    "a rewritten stored hash breaks the next link": 3,
    "a jcs event relabelled pyjson is named": 1,
    "a label flipped where both forms write the same bytes changes nothing": None,
}


def load_python_verifier() -> Any:
    spec = importlib.util.spec_from_file_location("verify_chain", ROOT / "examples" / "audit" / "verify_chain.py")
    assert spec is not None and spec.loader is not None
    verifier = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verifier)
    return verifier


def test_the_python_verifier_names_the_first_bad_sequence_of_the_same_chains() -> None:
    verifier = load_python_verifier()
    verdicts = {}
    for case in chain_cases():
        count, head, bad = verifier.verify(json.loads(json.dumps(case["events"], ensure_ascii=False)))
        verdicts[case["name"]] = None if bad is None else bad[0]
        if bad is None:
            assert (count, head) == (len(case["events"]), case["events"][-1]["hash"])
    assert verdicts == PYTHON_FIRST_BAD


@needs_node
def test_the_javascript_verifier_passes_its_node_tests_on_chains_built_by_rfc8785(tmp_path: Path) -> None:
    finished = run_node_tests({"canonical": canonical_vectors(3000), "chains": chain_cases()}, tmp_path)
    assert finished.returncode == 0, finished.stdout[-6000:] + finished.stderr[-2000:]
    assert "# fail 0" in finished.stdout and "# skipped 0" in finished.stdout
    assert f"# pass {3 + 1 + len(chain_cases())}" in finished.stdout
