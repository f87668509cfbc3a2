"""The console's third-party files: npm packages at pinned versions, vendored with their licences.

`static/vendor/vendor.json` is the one record: for each package its pinned version, its licence, the
files taken from its tarball (source path in the package → path under `static/vendor/`) and the
SHA-256 of each vendored file. To update a package: change its `version` there, run
`python -m app.console.vendor` (it needs `npm` and the npm registry; it `npm pack`s every package at
its pinned version, copies the listed files and the licence, and rewrites the hashes), run the
console's browser tests, and commit `static/vendor/` in one commit. `--check` (no network) verifies
that every vendored file still has its recorded hash; the test suite runs it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor"
RECORD = VENDOR_DIR / "vendor.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load() -> dict[str, Any]:
    """The record: package name → {version, license, files, sha256}."""
    record: dict[str, Any] = json.loads(RECORD.read_text("utf-8"))
    return record


def mismatches(record: dict[str, Any]) -> list[str]:
    """Every vendored file that is missing or differs from its recorded hash (empty when all match)."""
    problems = []
    for name, pin in sorted(record.items()):
        for target in pin["files"].values():
            path = VENDOR_DIR / target
            if not path.is_file():
                problems.append(f"{name}: {target} is missing")
            elif _sha256(path) != pin["sha256"].get(target):
                problems.append(f"{name}: {target} differs from the recorded SHA-256")
    return problems


def _unpack(name: str, version: str, into: Path) -> Path:
    subprocess.run(
        ["npm", "pack", f"{name}@{version}", "--silent"], cwd=into, check=True, capture_output=True
    )
    (tarball,) = into.glob("*.tgz")
    with tarfile.open(tarball) as archive:
        archive.extractall(into, filter="data")
    tarball.unlink()
    return into / "package"


def update(record: dict[str, Any]) -> None:
    """Fetch every package at its pinned version, copy its files and rewrite the recorded hashes."""
    for name, pin in sorted(record.items()):
        with tempfile.TemporaryDirectory() as tmp:
            package = _unpack(name, pin["version"], Path(tmp))
            pin["sha256"] = {}
            for source, target in pin["files"].items():
                destination = VENDOR_DIR / target
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(package / source, destination)
                pin["sha256"][target] = _sha256(destination)
    RECORD.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", "utf-8")


def main(argv: list[str]) -> int:
    """`--check`: verify the vendored files; no argument: re-vendor at the pinned versions."""
    record = load()
    if argv[1:] != ["--check"]:
        update(record)
    problems = mismatches(record)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
