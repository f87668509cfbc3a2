"""Executor fan-out: a prime sweep with 200 executor workers on a pool of 4, against a plain asyncio
script running the same 200 commands under a semaphore of 4 (the runtime's overhead ratio)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from app.domain.canonical import parse_ms
from bench.common import (
    PYTHON,
    ROOT,
    Config,
    Databases,
    Row,
    Sample,
    Server,
    Table,
    app_url,
    log,
    migrate,
    retried,
    run_async,
)
from bench.trivial import Counter

WORKERS = 200
POOL = 4
CHUNK = 100
START = 1_000_003
BUNDLE = "prime_sweep_200"
EXAMPLE = ROOT / "examples" / "prime_sweep_4_workers" / "payloads" / "prime_worker"


def _ranges() -> list[tuple[str, int, int]]:
    return [(f"prime_worker_{i:04d}", START + (i - 1) * CHUNK, START + i * CHUNK - 1) for i in range(1, WORKERS + 1)]


def make_bundle(root: Path) -> Path:
    """A bundle directory like examples/prime_sweep_4_workers, with 200 workers and no summarizer."""
    bundle = root / BUNDLE
    if bundle.exists():
        return bundle
    shutil.copytree(EXAMPLE, bundle / "payloads" / "prime_worker")
    nodes: list[dict[str, Any]] = [
        {"node_id": "dispatcher", "agent_type": "router", "type": "map", "role": "root_coordinator",
         "config": {"emit_type": "prime_chunk_request"}},
    ]
    edges: list[dict[str, Any]] = []
    for worker, lo, hi in _ranges():
        nodes.append({
            "node_id": worker, "agent_type": "executor", "type": "map",
            "config": {
                "upload_path": "prime_worker", "upload_as": "prime_worker", "workdir": "/sandbox/job/prime_worker",
                "command": ["python3", "scripts/check_prime_range.py", worker, str(lo), str(hi)],
                "pool": "default", "pool_slots": 1, "output_message_type": "prime_chunk_result",
            },
        })
        edges.append({"from_node": "dispatcher", "to_node": worker, "message_type": "prime_chunk_request"})
        edges.append({"from_node": worker, "to_node": "collector", "message_type": "prime_chunk_result"})
    nodes.append({"node_id": "collector", "agent_type": "aggregator", "type": "reduce",
                  "config": {"complete_after": WORKERS}})
    manifest = {
        "manifest_version": "1.0", "graph_id": BUNDLE, "entrypoints": ["dispatcher"],
        "initial_inputs": {"dispatcher": [{"benchmark": "prime_sweep", "worker_count": WORKERS}]},
        "nodes": nodes, "edges": edges, "policies": {"recovery_mode": "cluster_recover"},
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return bundle


def baseline(cfg: Config) -> tuple[float, int]:
    """The same 200 commands under asyncio.Semaphore(4), in the bundle's own script directory."""
    commands = [
        {"argv": ["python3", "scripts/check_prime_range.py", w, str(lo), str(hi)], "cwd": str(EXAMPLE)}
        for w, lo, hi in _ranges()
    ]
    path = cfg.workdir / "fanout_commands.json"
    path.write_text(json.dumps(commands))
    out = subprocess.run(
        [PYTHON, "-m", "bench.peers", "semaphore", "--commands", str(path), "--limit", str(POOL)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return float(data["seconds"]), int(data["prime_count"])


def ours(server: Server, backend: str, target: str) -> tuple[float, int, int]:
    """Submit the sweep; (wall seconds from POST to the completion timestamp, primes found, peak RSS).

    Completion is polled in the database, not through the API: GET /jobs/{id} of a 202-agent job
    every 100 ms would add its own cost to the node being measured.
    """
    assert server.rss is not None
    server.rss.reset()
    started = time.time()
    job_id = server.post_json("/api/v1/jobs", {"bundle_id": BUNDLE})["job_id"]
    deadline = time.monotonic() + 600
    with Counter(backend, target) as counter:
        while counter.status(job_id) not in ("completed", "failed", "cancelled"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"fan-out job {job_id} still running after 600 s")
            time.sleep(0.05)
    job = server.get_json(f"/api/v1/jobs/{job_id}")["job"]
    if job["status"] != "completed":
        raise RuntimeError(f"fan-out job {job_id} ended {job['status']}: {job['result']}")
    elapsed = parse_ms(job["updated_at"]) / 1000 - started
    primes = sum(json.loads(m["sandbox"]["stdout"])["prime_count"] for m in job["result"]["output"]["messages"])
    return elapsed, primes, server.rss.peak


def run(cfg: Config, dbs: Databases) -> Table:
    table = Table(f"Executor fan-out: {WORKERS} executors (prime sweep) on a pool of {POOL} vs asyncio.Semaphore({POOL})")
    bundles = cfg.workdir / "bundles"
    make_bundle(bundles)
    base: list[float] = []
    expected = 0
    walls: dict[str, list[float]] = {b: [] for b in cfg.backends}
    peaks: dict[str, list[int]] = {b: [] for b in cfg.backends}
    for backend in cfg.backends:
        target: Any = run_async(dbs.create_pg("fanout")) if backend == "postgres" else dbs.sqlite_file("fanout")
        url = app_url(backend, target)
        run_async(migrate(url))
        env = {
            "MIRROR_NEURON_BUNDLES_DIR": str(bundles),
            "MIRROR_NEURON_EXECUTOR_MAX_CONCURRENCY": str(POOL),
        }
        with Server(cfg, url, f"fanout-{backend}", **env) as server:
            for i in range(cfg.runs):
                seconds, expected = retried("semaphore baseline", lambda: baseline(cfg))
                base.append(seconds)
                wall, primes, peak = retried(
                    "fan-out job", lambda s=server, b=backend, t=str(target): ours(s, b, t))
                if primes != expected:
                    raise RuntimeError(f"fan-out found {primes} primes, the baseline {expected}")
                walls[backend].append(wall)
                peaks[backend].append(peak)
                log(f"fan-out {backend} run {i + 1}: {wall:.2f} s (peak RSS {peak / 2**20:.0f} MiB), "
                    f"semaphore {seconds:.2f} s")
        if backend == "postgres":
            run_async(dbs.drop_pg(str(target)))
    reference = Sample.of(base)
    for backend in cfg.backends:
        mine = Sample.of(walls[backend])
        ratio = mine.median / reference.median
        table.add(Row(f"{WORKERS} executors, wall", backend, mine, "s", "asyncio semaphore", reference, ratio,
                      "≤ 1.1×", ratio <= 1.1))
        table.add(Row("peak RSS of the node", backend, Sample.of([p / 2**20 for p in peaks[backend]]), "MiB"))
    table.notes.append(
        f"Each executor runs `python3 check_prime_range.py` on {CHUNK} numbers (the prime_sweep example's script) "
        f"in its own staging directory; the job completes when the aggregator has all {WORKERS} results "
        f"({expected} primes, checked against the baseline). One server per database; runs alternate with the baseline."
    )
    return table
