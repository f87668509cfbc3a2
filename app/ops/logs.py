"""Log lines as text or JSON (SPEC C.3.3): `ts`, `level`, `logger`, `msg`, and `node`, `request_id`, `job_id`.

The standard `logging` module with a formatter of ours: the JSON one is `json.dumps` of a dict
(a library such as python-json-logger would still need our field names, our timestamp and the
request id of the current task, which is most of these lines). The request id lives in a context
variable, so every line a request's task logs carries it; `job_id` and `agent_id` come from
`extra=`.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
# Fields a call may pass with `extra=` that become part of the line.
CONTEXT_FIELDS = ("job_id", "agent_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def __init__(self, node: str | None) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (newlines in messages and tracebacks are escaped)."""
        line: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.node is not None:
            line["node"] = self.node
        request_id = REQUEST_ID.get()
        if request_id is not None:
            line["request_id"] = request_id
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with `request_id=` and `job_id=` appended where they apply."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """`<time> <LEVEL> <logger>: <message> [request_id=…] [job_id=…]`."""
        text = super().format(record)
        request_id = REQUEST_ID.get()
        suffix = "" if request_id is None else f" request_id={request_id}"
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                suffix += f" {name}={value}"
        if not suffix:
            return text
        head, newline, tail = text.partition("\n")  # keep a traceback below the line
        return head + suffix + newline + tail


def configure(log_format: str, level: str, *, node: str | None) -> None:
    """Send every logger's lines to stderr in `log_format` (`text` or `json`) at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(node) if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level, logging.INFO))
