"""Rebuild: `mirror-neuron rebuild` of ~10⁶ events (events/s) against a raw keyset scan of the same table."""

from __future__ import annotations

import json
import os
import re
import subprocess

from bench.common import (
    APP_ROOT,
    PYTHON,
    ROOT,
    Config,
    Databases,
    Row,
    Sample,
    Table,
    app_env,
    log,
    retried,
    run_child,
)
from bench.seed import seeded


def run(cfg: Config, dbs: Databases) -> Table:
    table = Table("Rebuild: `mirror-neuron rebuild` (drop every projection row, replay the log) vs a raw keyset scan")
    for backend in cfg.backends:
        data = seeded(cfg, dbs, backend)
        env = {**os.environ, "MIRROR_NEURON_DATABASE_URL": data.url, "MIRROR_NEURON_LOG_LEVEL": "WARNING"}
        rates: list[float] = []
        inner: list[float] = []
        peaks: list[float] = []
        scans: list[float] = []
        count = 0
        for i in range(cfg.runs):
            wall, peak, out = retried("rebuild", lambda e=env: run_child([PYTHON, "-m", "app", "rebuild"], env=app_env(e), cwd=APP_ROOT))
            found = re.search(r"from (\d+) events in ([0-9.]+) s", out)
            if found is None:
                raise RuntimeError(f"unexpected rebuild output: {out}")
            count = int(found.group(1))
            rates.append(count / wall)
            inner.append(count / float(found.group(2)))
            peaks.append(peak / 2**20)
            name = "pg-scan" if backend == "postgres" else "sqlite-scan"
            scan = retried("raw scan", lambda n=name, t=data.target: subprocess.run(
                [PYTHON, "-m", "bench.peers", n, "--target", t], cwd=ROOT,
                capture_output=True, text=True, check=True,
            ).stdout)
            scans.append(float(json.loads(scan.strip().splitlines()[-1])["rate"]))
            log(f"rebuild {backend} run {i + 1}: {count:,} events in {wall:.1f} s = {rates[-1]:,.0f} events/s "
                f"(peak RSS {peaks[-1]:.0f} MiB); raw scan {scans[-1]:,.0f} rows/s")
        mine, scan = Sample.of(rates), Sample.of(scans)
        gate = backend == "postgres"
        table.add(Row(f"rebuild of {count:,} events (process wall)", backend, mine, "events/s", "raw keyset scan",
                      scan, mine.median / scan.median, "≥ 100k/s" if gate else "",
                      mine.median >= 100_000 if gate else None))
        table.add(Row("rebuild, the command's own timing", backend, Sample.of(inner), "events/s"))
        table.add(Row("peak RSS of the rebuild process", backend, Sample.of(peaks), "MiB"))
    table.notes.append(
        "events/s counts the whole process (interpreter start included); the raw scan reads the same rows in the "
        "same (stream_id, sequence) order with the same batch size (5,000) through the bare driver and does nothing with them."
    )
    return table
