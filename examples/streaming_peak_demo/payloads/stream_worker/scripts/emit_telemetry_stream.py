"""Emit a synthetic telemetry feed as a stream of NDJSON chunks (structured stdout).

Sample i has value BASELINE + ((7 * i) mod (2 * JITTER + 1)) - JITTER, plus PEAK_HEIGHT when i is
one of PEAK_POSITIONS. Samples are cut into chunks of CHUNK_SIZE; each chunk becomes one
"telemetry_chunk" message of class "stream" with an NDJSON string body.
"""

from __future__ import annotations

import json
import os
import sys


def env_number(name: str, default: str) -> int | float:
    text = os.environ.get(name, default).strip()
    try:
        return int(text)
    except ValueError:
        return float(text)


def env_positions(name: str, default: str) -> set[int]:
    text = os.environ.get(name, default)
    return {int(item) for item in text.split(",") if item.strip()}


def sample_values(count: int, baseline: float, jitter: int, peak_height: float, peaks: set[int]) -> list:
    values = []
    for index in range(count):
        value = baseline + ((7 * index) % (2 * jitter + 1)) - jitter
        if index in peaks:
            value += peak_height
        values.append(value)
    return values


def chunk_messages(values: list, chunk_size: int, device_id: str, encoding: str, stream_id: str) -> list:
    starts = range(0, len(values), chunk_size)
    total = len(starts)
    messages = []
    for seq, start in enumerate(starts, start=1):
        rows = "".join(
            json.dumps({"device_id": device_id, "sample_index": index, "value": values[index]}) + "\n"
            for index in range(start, min(start + chunk_size, len(values)))
        )
        messages.append(
            {
                "type": "telemetry_chunk",
                "class": "stream",
                "content_type": "application/x-ndjson",
                "content_encoding": encoding,
                "body": rows,
                "headers": {"schema_ref": "com.example.telemetry.chunk", "schema_version": "1.0.0"},
                "stream": {
                    "stream_id": stream_id,
                    "seq": seq,
                    "open": seq == 1,
                    "close": seq == total,
                    "eof": seq == total,
                },
            }
        )
    return messages


def main() -> int:
    count = int(env_number("SAMPLE_COUNT", "60"))
    chunk_size = max(int(env_number("CHUNK_SIZE", "6")), 1)
    values = sample_values(
        count,
        env_number("BASELINE", "24"),
        int(env_number("JITTER", "4")),
        env_number("PEAK_HEIGHT", "55"),
        env_positions("PEAK_POSITIONS", "20,40"),
    )
    job_id = os.environ.get("MIRROR_NEURON_JOB_ID", "local")
    agent_id = os.environ.get("MIRROR_NEURON_AGENT_ID", "telemetry_source")
    messages = chunk_messages(
        values,
        chunk_size,
        os.environ.get("DEVICE_ID", "sensor-alpha"),
        os.environ.get("STREAM_CONTENT_ENCODING", "identity"),
        f"{job_id}:{agent_id}:telemetry",
    )
    print(json.dumps({"emit_messages": messages}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
