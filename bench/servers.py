"""`python -m bench.servers [--runs N] [--seconds S] [--quick]`: uvicorn against Granian, side by side.

The HTTP-server question of issue 22, for ours and for the stack floor alike: both servers of a pair
(ours under uvicorn and ours under Granian; then the floor under each) run at the same time on the
same seeded Postgres database, each driven by its own wrk with the same script and connections, so
that whatever else the shared machine does at that moment weighs on both alike. Reported per
endpoint (submit, details, list): requests/s, p99 and CPU ms per request of the server process and of
its Postgres backends, median of the runs, and Granian ÷ uvicorn.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import threading
from typing import Any

from bench.common import (
    Config,
    Databases,
    Sample,
    Server,
    fmt,
    load_average,
    log,
    machine,
    per_op_ms,
    run_async,
    today,
    trivial_manifest,
    wrk,
)
from bench.cpu import measured
from bench.floor import FloorServer
from bench.seed import seeded

KINDS = ("uvicorn", "granian")
ENDPOINTS = (  # name, path, wrk script, connections
    ("submit", "/api/v1/jobs", "post_jobs.lua", 16),
    ("details", "/api/v1/jobs/x", "get_job.lua", 32),
    ("list", "/api/v1/jobs?limit=100", "get.lua", 32),
)


def _one(base: str, pid: int, path: str, script: str, connections: int, seconds: float,
         env: dict[str, str]) -> tuple[float, float, float, float]:
    with measured({"server": pid}) as cpu:
        r = wrk(base + path, script=script, connections=connections, seconds=seconds, env=env)
    c = cpu()
    if r.non2xx or r.errors:
        log(f"  {base}{path}: {r.non2xx} non-2xx, {r.errors} socket errors")
    return r.rps, r.p99_ms, per_op_ms(c["server"], r.requests), per_op_ms(c["server:pg"], r.requests)


def side_by_side(servers: dict[str, Any], path: str, script: str, connections: int, seconds: float,
                 env: dict[str, str]) -> dict[str, tuple[float, float, float, float]]:
    """One wrk per server, all at once; returns each kind's (req/s, p99 ms, CPU ms/req, Postgres CPU ms/req)."""
    results: dict[str, tuple[float, float, float, float]] = {}

    def drive(kind: str) -> None:
        s = servers[kind]
        results[kind] = _one(s.base, s.proc.pid, path, script, connections, seconds, env)

    threads = [threading.Thread(target=drive, args=(k,)) for k in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="a smaller seeded database")
    parser.add_argument("--processes", type=int, default=1, help="MIRROR_NEURON_API_PROCESSES of every server")
    args = parser.parse_args(argv)
    cfg = Config(quick=args.quick, runs=args.runs, backends=("postgres",), pg_dsn="postgresql://postgres@127.0.0.1:5432/postgres")
    dbs = Databases(cfg)
    lines = [f"## uvicorn vs Granian, side by side — {today()}", "",
             f"Machine: {machine()}. Load average at start {load_average()}. {args.runs} runs of {args.seconds:g} s; "
             f"{args.processes} process(es) per server.", ""]
    try:
        data = seeded(cfg, dbs, "postgres")
        ids = cfg.workdir / "ids.txt"
        ids.write_text("\n".join(random.sample(data.job_ids, min(2000, len(data.job_ids)))) + "\n")
        body = cfg.workdir / "body.json"
        body.write_text(json.dumps(trivial_manifest("bench_submit")))
        env = {"BENCH_IDS_FILE": str(ids), "BENCH_BODY_FILE": str(body)}
        procs = str(args.processes)
        table: dict[tuple[str, str, str], list[tuple[float, float, float, float]]] = {}
        for who in ("ours", "floor"):
            with contextlib.ExitStack() as stack:
                servers: dict[str, Any] = {}
                for kind in KINDS:
                    if who == "ours":
                        servers[kind] = stack.enter_context(Server(
                            cfg, data.url, f"servers-{kind}", MIRROR_NEURON_RUNTIME_ENABLED="0",
                            MIRROR_NEURON_HTTP_SERVER=kind, MIRROR_NEURON_API_PROCESSES=procs))
                    else:
                        with _env(MIRROR_NEURON_HTTP_SERVER=kind, MIRROR_NEURON_API_PROCESSES=procs):
                            servers[kind] = stack.enter_context(FloorServer(cfg, data.target, f"servers-{kind}"))
                for _name, path, script, conns in ENDPOINTS:  # warm-up
                    side_by_side(servers, path, script, conns, 1, env)
                for i in range(args.runs):
                    for name, path, script, conns in ENDPOINTS:
                        got = side_by_side(servers, path, script, conns, args.seconds, env)
                        for kind, figures in got.items():
                            table.setdefault((who, name, kind), []).append(figures)
                        log(f"{who} {name} run {i + 1}: " + "; ".join(
                            f"{k} {v[0]:.0f}/s p99 {v[1]:.0f} ms CPU {v[2]:.3f}+{v[3]:.3f} ms" for k, v in got.items()))
        lines += ["| server | endpoint | uvicorn req/s | granian req/s | uvicorn p99 | granian p99 "
                  "| uvicorn CPU ms/req (+ PG) | granian CPU ms/req (+ PG) | granian ÷ uvicorn, CPU |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for who in ("ours", "floor"):
            for name, *_ in ENDPOINTS:
                u, g = table[(who, name, "uvicorn")], table[(who, name, "granian")]

                def med(rows: list[tuple[float, float, float, float]], i: int) -> Sample:
                    return Sample.of([r[i] for r in rows])

                cu, cg = med(u, 2), med(g, 2)
                lines.append(
                    f"| {who} | {name} | {fmt(med(u, 0).median)} (±{med(u, 0).spread * 50:.0f}%) | "
                    f"{fmt(med(g, 0).median)} (±{med(g, 0).spread * 50:.0f}%) | {fmt(med(u, 1).median, 'ms')} | "
                    f"{fmt(med(g, 1).median, 'ms')} | {cu.median:.3f} (±{cu.spread * 50:.0f}%) + {med(u, 3).median:.3f} | "
                    f"{cg.median:.3f} (±{cg.spread * 50:.0f}%) + {med(g, 3).median:.3f} | {cg.median / cu.median:.2f}× |")
        lines.append("")
        lines.append(f"Load average at the end {load_average()}.")
        print("\n".join(lines))
    finally:
        run_async(dbs.drop_all())
    return 0


@contextlib.contextmanager
def _env(**values: str):  # type: ignore[no-untyped-def]
    """os.environ with these values for the block (FloorServer passes its environment on)."""
    import os

    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


if __name__ == "__main__":
    raise SystemExit(main())
