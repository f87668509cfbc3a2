"""Turn the shell worker's metrics into a one-line report.

Reads MIRROR_NEURON_INPUT_FILE: the shell executor's output payload
{"agent_id", "sandbox": {"stdout", ...}, "input": <the seed>}; sandbox.stdout is the JSON printed by
collect_metrics.sh. Prints {"request_id", "headline", "explanation", "text_preview"} (plain data).
"""

from __future__ import annotations

import json
import os
import sys


def build_report(payload: dict) -> dict:
    metrics = json.loads(payload["sandbox"]["stdout"])
    seed = payload.get("input") or {}
    text = metrics.get("text") or ""
    word_count = metrics["word_count"]
    char_count = metrics["char_count"]
    return {
        "request_id": seed.get("request_id"),
        "headline": f"{seed.get('label')}: {word_count} words, {char_count} chars",
        "explanation": (
            f"The shell step counted {word_count} words and {char_count} bytes of text; "
            "this Python step read its output from the upstream executor result."
        ),
        "text_preview": text[:40],
    }


def main() -> int:
    with open(os.environ["MIRROR_NEURON_INPUT_FILE"], encoding="utf-8") as handle:
        payload = json.load(handle)
    print(json.dumps(build_report(payload)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
