"""`python -m bench [--quick] [--only NAMES] [--backends postgres,sqlite] [--runs N] [--profile DIR]`.

Runs every benchmark of issue 5 against a local Postgres (scratch databases created and dropped
here) and SQLite files in a temporary directory, and prints one Markdown table per benchmark:
our figure, the peer or limit measured in the same run, their ratio and the target.
Peers: `pip install -e '.[bench]'`; load generator: `apt-get install -y wrk`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from bench.common import DEFAULT_PG_DSN, Config, Databases, load_average, log, machine, run_async, today

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
    args = parser.parse_args(argv)
    only = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    if shutil.which("wrk") is None and {"submit", "trivial", "reads"} & set(only):
        parser.error("wrk is not installed (apt-get install -y wrk)")
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
        f"Machine: {machine()}. Load average at start {load_average()}.",
        f"Each figure is the median of {cfg.runs} runs; spread = ±half of (max − min)/median.",
        "",
    ]
    print("\n".join(header), flush=True)
    outputs = list(header)
    started = time.monotonic()
    try:
        for name in only:
            module = __import__(f"bench.{name}", fromlist=["run"])
            log(f"--- {name}")
            table = module.run(cfg, dbs)
            text = table.render()
            print(text, flush=True)
            outputs.append(text)
    finally:
        run_async(dbs.drop_all())
        shutil.rmtree(cfg.workdir, ignore_errors=True)
    footer = f"Total {time.monotonic() - started:.0f} s; load average at the end {load_average()}."
    print(footer)
    outputs.append(footer)
    if args.output:
        args.output.write_text("\n".join(outputs) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
