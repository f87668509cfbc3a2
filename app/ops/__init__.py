"""What operators see (SPEC Appendix C.3): metrics, logs, request ids, traces, the operations listener.

- `metrics`: the Prometheus registry and the one-line calls the write path, the runtime, the pools
  and the HTTP edge make where their events happen (no-ops until the listener is on);
- `logs`: text or JSON log lines, the request id and node of every line;
- `lifecycle`: what a commit of this process means to an operator: events counted by type, one
  INFO line per job lifecycle transition, node event and bundle change;
- `requests`: the ASGI middleware of the API port: request ids, access lines, HTTP metrics and spans;
- `tracing`: optional OpenTelemetry spans (the `otel` extra);
- `listener`: `GET /metrics`, `/livez`, `/readyz` on MIRROR_NEURON_METRICS_PORT;
- `memory`: the process's malloc arenas and cyclic-GC tuning (every long-running process: API and node).

The domain never sees any of it; `store`, `service` and `runtime` call `metrics`, `tracing` and
`lifecycle`, which import nothing of theirs.
"""
