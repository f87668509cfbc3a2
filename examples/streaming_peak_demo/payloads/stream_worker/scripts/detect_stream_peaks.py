"""Detect peaks in one telemetry chunk, keeping a rolling window in the agent state.

Reads the chunk from MIRROR_NEURON_BODY_FILE (gunzipped when MIRROR_NEURON_BODY_CONTENT_ENCODING is
gzip; NDJSON rows {"device_id", "sample_index", "value"}), the message's `stream` from
MIRROR_NEURON_MESSAGE_FILE and the rolling state from the context file's `agent_state`. A point is a
peak when at least WARMUP_POINTS points came before it, value >= baseline * SPIKE_MULTIPLIER and
value - baseline >= MIN_SPIKE_DELTA, baseline being the mean of the previous WINDOW_SIZE values.
Prints next_state, events and, on the closing chunk, complete_job.
"""

from __future__ import annotations

import gzip
import json
import os
import sys


def read_json(variable: str) -> dict:
    path = os.environ.get(variable)
    if not path:
        return {}
    with open(path, encoding="utf-8") as handle:
        value = json.load(handle)
    return value if isinstance(value, dict) else {}


def read_rows() -> list[dict]:
    with open(os.environ["MIRROR_NEURON_BODY_FILE"], "rb") as handle:
        data = handle.read()
    if os.environ.get("MIRROR_NEURON_BODY_CONTENT_ENCODING") == "gzip":
        data = gzip.decompress(data)
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    return [row for row in rows if isinstance(row, dict)]


def initial_state(agent_state: object) -> dict:
    state = agent_state if isinstance(agent_state, dict) else {}
    return {
        "device_id": state.get("device_id"),
        "points_seen": state.get("points_seen", 0),
        "chunks_received": state.get("chunks_received", 0),
        "window": list(state.get("window", [])),
        "peaks": list(state.get("peaks", [])),
    }


def scan(state: dict, rows: list[dict], settings: dict) -> list[dict]:
    """Advance the state over the rows; return the peaks found among them."""
    found = []
    for row in rows:
        value = row["value"]
        window = state["window"]
        if state["points_seen"] >= settings["warmup"] and window:
            baseline = sum(window) / len(window)
            if value >= baseline * settings["multiplier"] and value - baseline >= settings["min_delta"]:
                found.append({"sample_index": row["sample_index"], "value": value, "baseline": baseline})
        window.append(value)
        del window[: -settings["window_size"]]
        state["points_seen"] += 1
        state["device_id"] = row.get("device_id", state["device_id"])
    state["peaks"].extend(found)
    return found


def summary(state: dict) -> dict:
    peaks = sorted(state["peaks"], key=lambda peak: peak["sample_index"])
    return {
        "mode": "stream_peak_detection",
        "device_id": state["device_id"],
        "chunks_received": state["chunks_received"],
        "points_seen": state["points_seen"],
        "anomaly_detected": bool(peaks),
        "peak_count": len(peaks),
        "peaks": peaks,
        "largest_peak": max(peaks, key=lambda peak: peak["value"]) if peaks else None,
    }


def main() -> int:
    settings = {
        "warmup": int(os.environ.get("WARMUP_POINTS", "5")),
        "window_size": max(int(os.environ.get("WINDOW_SIZE", "8")), 1),
        "multiplier": float(os.environ.get("SPIKE_MULTIPLIER", "2.4")),
        "min_delta": float(os.environ.get("MIN_SPIKE_DELTA", "20.0")),
    }
    stream = read_json("MIRROR_NEURON_MESSAGE_FILE").get("stream")
    stream = stream if isinstance(stream, dict) else {}
    state = initial_state(read_json("MIRROR_NEURON_CONTEXT_FILE").get("agent_state"))
    rows = read_rows()
    state["chunks_received"] += 1
    found = scan(state, rows, settings)
    events = [
        {
            "type": "stream_chunk_processed",
            "payload": {
                "chunk_seq": stream.get("seq", state["chunks_received"]),
                "points": len(rows),
                "points_seen": state["points_seen"],
            },
        }
    ]
    events.extend({"type": "stream_peak_detected", "payload": peak} for peak in found)
    output = {"next_state": state, "events": events}
    if stream.get("close") or stream.get("eof"):
        output["complete_job"] = summary(state)
    print(json.dumps(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
