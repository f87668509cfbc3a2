"""`python -m bench [--quick] [--only NAMES] [--backends postgres,sqlite] [--runs N] [--profile DIR] [--compare REF]`.

Runs every benchmark of issue 5 against a local Postgres (scratch databases created and dropped
here) and SQLite files in a temporary directory, and prints one Markdown table per benchmark:
our figure, the peer or limit measured in the same run, their ratio and the target, and the CPU time
per operation of every process measured (ours, the peers', the floor's, their Postgres backends').

`--compare REF` judges a change by paired runs: the working tree against commit REF (checked out
with `git worktree` into a temporary directory), each side a separate `python -m bench --runs 1`
process, interleaved A B B A … for --runs rounds on the same machine; it prints every figure's
median and spread on each side and the ratio of the medians.
Peers: `pip install -e '.[bench]'`; load generator: `apt-get install -y wrk`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    APP_ROOT,
    DEFAULT_PG_DSN,
    PYTHON,
    ROOT,
    Config,
    Databases,
    Sample,
    fmt,
    load_average,
    log,
    machine,
    run_async,
    today,
)

BENCHMARKS = ("submit", "trivial", "fanout", "reads", "rebuild")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and short runs (a few minutes)")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--backends", default="postgres,sqlite", help="postgres,sqlite (default both)")
    parser.add_argument("--runs", type=int, help="runs per measurement (default 3 quick, 5 full)")
    parser.add_argument("--pg-dsn", default=DEFAULT_PG_DSN, help=f"maintenance database (default {DEFAULT_PG_DSN})")
    parser.add_argument("--profile", type=Path, help="record py-spy flame graphs of the servers into DIR")
    parser.add_argument("--output", type=Path, help="also write the tables to this Markdown file")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this JSON file")
    parser.add_argument("--compare", metavar="REF", help="paired runs: the working tree against commit REF")
    parser.add_argument("--b-env", metavar="NAME=VALUE", action="append", default=[],
                        help="paired runs: the working tree with this environment (B) against it without (A), "
                             "or against REF with --compare; e.g. MIRROR_NEURON_HTTP_SERVER=granian")
    args = parser.parse_args(argv)
    only = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    if shutil.which("wrk") is None and {"submit", "trivial", "reads"} & set(only):
        parser.error("wrk is not installed (apt-get install -y wrk)")
    if args.compare or args.b_env:
        return compare(args, only)
    cfg = Config(
        quick=args.quick,
        runs=args.runs or (3 if args.quick else 5),
        backends=tuple(b.strip() for b in args.backends.split(",") if b.strip()),
        pg_dsn=args.pg_dsn,
        profile_dir=args.profile,
    )
    dbs = Databases(cfg)
    header = [
        f"## MirrorNeuron benchmarks — {today()}{' (quick)' if cfg.quick else ''}",
        "",
        f"Machine: {machine()}. Load average at start {load_average()}. Commit {commit(APP_ROOT)}.",
        f"Each figure is the median of {cfg.runs} runs; spread = ±half of (max − min)/median.",
        "",
    ]
    print("\n".join(header), flush=True)
    outputs = list(header)
    tables: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for name in only:
            module = __import__(f"bench.{name}", fromlist=["run"])
            log(f"--- {name}")
            table = module.run(cfg, dbs)
            text = table.render()
            print(text, flush=True)
            outputs.append(text)
            tables.append(table.to_json())
            if args.json:  # after every benchmark, so that a failure later keeps what was measured
                args.json.write_text(json.dumps({"commit": commit(APP_ROOT), "tables": tables}))
    finally:
        run_async(dbs.drop_all())
        shutil.rmtree(cfg.workdir, ignore_errors=True)
    footer = f"Total {time.monotonic() - started:.0f} s; load average at the end {load_average()}."
    print(footer)
    outputs.append(footer)
    if args.output:
        args.output.write_text("\n".join(outputs) + "\n")
    return 0


def commit(root: Path) -> str:
    """The commit checked out at `root` (with `+dirty` when its tracked files differ from it)."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(root), *argv], capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def compare(args: argparse.Namespace, only: list[str]) -> int:
    """Run the benchmarks on the working tree (B) and on commit REF (A), interleaved, one process per run."""
    runs = args.runs or 3
    workdir = Path(tempfile.mkdtemp(prefix="mn_bench_compare_"))
    ref_dir = workdir / "ref"
    b_env = dict(item.split("=", 1) for item in args.b_env)
    if args.compare:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(ref_dir), args.compare],
                       check=True, capture_output=True)
    sides = {"A": ref_dir if args.compare else ROOT, "B": ROOT}
    envs = {"A": {}, "B": b_env}
    labels = {
        "A": f"{args.compare} ({commit(ref_dir)})" if args.compare else f"this tree ({commit(ROOT)})",
        "B": f"this tree ({commit(ROOT)})" + "".join(f" {k}={v}" for k, v in b_env.items()),
    }
    results: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    started = time.monotonic()
    try:
        for i in range(runs):
            for side in ("A", "B") if i % 2 == 0 else ("B", "A"):  # A B B A A B …: a drift cancels out
                out = workdir / f"{side}{i}.json"
                argv = [PYTHON, "-m", "bench", "--only", ",".join(only), "--backends", args.backends,
                        "--runs", "1", "--pg-dsn", args.pg_dsn, "--json", str(out)]
                if args.quick:
                    argv.append("--quick")
                log(f"=== compare round {i + 1}/{runs}: {side} = {labels[side]}")
                proc = subprocess.run(argv, cwd=ROOT, env={**os.environ, **envs[side], "BENCH_APP_ROOT": str(sides[side])},
                                      stdout=subprocess.DEVNULL)
                if proc.returncode != 0 or not out.exists():
                    raise SystemExit(f"the run of {labels[side]} failed ({proc.returncode})")
                results[side].append(json.loads(out.read_text()))
    finally:
        if args.compare:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(ref_dir)],
                           capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
    text = render_comparison(results, labels, runs)
    text += f"\nTotal {time.monotonic() - started:.0f} s; load average at the end {load_average()}.\n"
    print(text)
    if args.output:
        args.output.write_text(text)
    return 0


def render_comparison(results: dict[str, list[dict[str, Any]]], labels: dict[str, str], runs: int) -> str:
    """One table per benchmark: each figure's median (spread) on each side and B ÷ A."""
    series: dict[str, dict[tuple[str, str, str], dict[str, list[float]]]] = {}
    for side, documents in results.items():
        for doc in documents:
            seen: set[tuple[str, tuple[str, str, str]]] = set()
            for table in doc["tables"]:
                rows = series.setdefault(table["title"], {})
                for row in table["rows"]:
                    keys = [((row["what"], row["backend"], row["unit"]), row["ours"])]
                    if row["peer_name"] and row["peer"]:
                        keys.append(((f"{row['what']} — peer: {row['peer_name']}", row["backend"], row["unit"]),
                                     row["peer"]))
                    for key, values in keys:
                        if (table["title"], key) in seen:  # rows repeating the same figure count once per run
                            continue
                        seen.add((table["title"], key))
                        rows.setdefault(key, {"A": [], "B": []})[side].extend(values)
    lines = [
        f"## Paired runs — {today()}",
        "",
        f"Machine: {machine()}. A = {labels['A']}, B = {labels['B']}; {runs} rounds, A B B A …, each run a "
        "separate process; median (±half the spread) of each side and B ÷ A of the medians.",
        "",
    ]
    for title, rows in series.items():
        lines += [f"### {title}", "", "| measurement | db | A | B | B ÷ A |", "|---|---|---|---|---|"]
        for (what, backend, unit), sides in rows.items():
            a, b = Sample.of(sides["A"]), Sample.of(sides["B"])
            ratio = f"{b.median / a.median:.2f}×" if a.values and b.values and a.median else "—"
            lines.append(f"| {what} | {backend} | {fmt(a.median, unit)} (±{a.spread * 50:.0f}%) | "
                         f"{fmt(b.median, unit)} (±{b.spread * 50:.0f}%) | {ratio} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
