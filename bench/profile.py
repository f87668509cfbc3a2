"""`python -m bench.profile FILE.folded [--top N] [--match TEXT]`: where a py-spy profile spends its time.

Reads collapsed stacks (`frame;frame;... count`, as `python -m bench --profile DIR` records them)
and prints the functions with the most samples on top of the stack (self) and anywhere in it
(inclusive, each function counted once per stack), as shares of all samples.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_LOCATION = re.compile(r" \((?P<file>[^:()]+):\d+\)$")


def _function(frame: str) -> str:
    """`name (path/to/file.py:123)` → `name (file.py)`: lines of one function count together."""
    found = _LOCATION.search(frame)
    if found is None:
        return frame
    return f"{frame[: found.start()]} ({Path(found.group('file')).name})"


def summarise(path: Path, top: int, match: str | None) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        parsed = _LINE.match(line)
        if parsed is None:
            continue
        count = int(parsed.group("count"))
        frames = [_function(f) for f in parsed.group("stack").split(";") if f]
        if match is not None and not any(match in f for f in frames):
            continue
        total += count
        if frames:
            own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if total == 0:
        return f"{path}: no samples"
    lines = [f"{path}: {total} samples" + (f" in stacks through {match!r}" if match else "")]
    for title, counter in (("self", own), ("inclusive", inclusive)):
        lines.append(f"-- {title}")
        lines += [f"{100 * n / total:6.1f}%  {name}" for name, n in counter.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", help="only stacks with a frame containing this text")
    args = parser.parse_args(argv)
    print(summarise(args.file, args.top, args.match))
    return 0


if __name__ == "__main__":
    sys.exit(main())
