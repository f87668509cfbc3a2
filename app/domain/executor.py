"""Executor agent rules that need no I/O: settings, names, placeholders, results (SPEC §7.5)."""

from __future__ import annotations

import base64
import binascii
import json
import math
import os.path
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.domain.canonical import int_hook, is_out_of_range

DEFAULT_POOL = "default"
DEFAULT_OUTPUT_TYPE = "executor_result"
DEFAULT_NAME_PREFIX = "host-local"
DEFAULT_SANDBOX_PATH = "/sandbox/job"
DEFAULT_BACKOFF_MS = 500
RUNNER = "host_local"
ENV_PREFIX = "MIRROR_NEURON_"
RESULT_HEADERS = {"schema_ref": "com.mirrorneuron.executor.result", "schema_version": "1.0.0"}

INPUT_FILE = "mirror_neuron_input.json"
MESSAGE_FILE = "mirror_neuron_message.json"
BODY_FILE = "mirror_neuron_body.bin"
BODY_META_FILE = "mirror_neuron_body_meta.json"
CONTEXT_FILE = "mirror_neuron_context.json"

PLACEHOLDERS = ("input_file", "context_file", "message_file", "body_file", "workdir", "job_id", "agent_id")
STRUCTURED_KEYS = ("emit_messages", "events", "next_state", "complete_job", "complete_job?")
TRANSIENT_MARKERS = (
    "h2 protocol error",
    "peer closed connection",
    "status: unknown",
    "error reading a body from connection",
    "tls close_notify",
    "transport error",
    "connection reset",
    "connection refused",
    "timed out",
    "deadline exceeded",
    "unavailable",
)
EMIT_STRING_OPTIONS = ("class", "correlation_id", "causation_id", "content_type", "content_encoding")

_PLACEHOLDER_RE = re.compile(
    r"\{\{(" + "|".join(PLACEHOLDERS) + r")\}\}|\{(" + "|".join(PLACEHOLDERS) + r")\}"
)
_NAME_UNSAFE_RE = re.compile(r"[^a-z0-9-]")


# --------------------------------------------------------------------------------------------------
# Settings (§7.5.1)


@dataclass(frozen=True)
class ExecutorSettings:
    """The effective configuration of one executor agent."""

    pool: str = DEFAULT_POOL
    pool_slots: int = 1
    command: str | tuple[str, ...] | None = None
    workdir: str | None = None
    sandbox_upload_path: str = DEFAULT_SANDBOX_PATH
    environment: tuple[tuple[str, str], ...] = ()
    pass_env: tuple[str, ...] = ()
    output_message_type: str | None = DEFAULT_OUTPUT_TYPE
    complete_job: bool = False
    max_attempts: int = 1
    retry_backoff_ms: int = DEFAULT_BACKOFF_MS
    startup_delay_ms: int = 0
    timeout_seconds: float = 3600.0
    name_prefix: str = DEFAULT_NAME_PREFIX
    content_type: str | None = None
    content_encoding: str | None = None


def executor_settings(config: Mapping[str, Any], default_timeout: float) -> ExecutorSettings:
    """Read an executor node's `config` into settings, applying every default and coercion of §7.5.1."""
    return ExecutorSettings(
        pool=_text(config.get("pool"), DEFAULT_POOL),
        pool_slots=_positive_int(config.get("pool_slots")),
        command=_command(config.get("command")),
        workdir=_optional_str(config.get("workdir")),
        sandbox_upload_path=_str_or(config.get("sandbox_upload_path"), DEFAULT_SANDBOX_PATH),
        environment=_environment(config.get("environment")),
        pass_env=_names(config.get("pass_env")),
        output_message_type=_output_type(config),
        complete_job=config.get("complete_job") is True,
        max_attempts=_positive_int(config.get("max_attempts")),
        retry_backoff_ms=_non_negative_ms(config.get("retry_backoff_ms"), DEFAULT_BACKOFF_MS),
        startup_delay_ms=_non_negative_ms(config.get("startup_delay_ms"), 0),
        timeout_seconds=_timeout(config.get("timeout_seconds"), default_timeout),
        name_prefix=_text(config.get("name_prefix"), DEFAULT_NAME_PREFIX),
        content_type=_optional_str(config.get("content_type")),
        content_encoding=_optional_str(config.get("content_encoding")),
    )


def _is_int(value: Any) -> bool:
    """Tell whether a JSON value is an integer (booleans are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """Tell whether a JSON value is a finite number (booleans are not)."""
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _text(value: Any, default: str) -> str:
    """Return a string as is, null as the default, anything else as compact JSON text."""
    if value is None:
        return default
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _str_or(value: Any, default: str) -> str:
    """Return the value when it is a string, else the default."""
    return value if isinstance(value, str) else default


def _optional_str(value: Any) -> str | None:
    """Return the value when it is a string, else None."""
    return value if isinstance(value, str) else None


def _positive_int(value: Any) -> int:
    """Return an integer >= 1 as is; any other value becomes 1."""
    return int(value) if _is_int(value) and value >= 1 else 1


def _non_negative_ms(value: Any, default: int) -> int:
    """Return a non-negative number of milliseconds as an integer, else the default."""
    return int(value) if _is_number(value) and value >= 0 else default


def _timeout(value: Any, default: float) -> float:
    """Return a positive number of seconds, else the default."""
    return float(value) if _is_number(value) and value > 0 else float(default)


def _command(value: Any) -> str | tuple[str, ...] | None:
    """Return a string command, an argv tuple, or None when absent or malformed."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def _env_value(value: Any) -> str:
    """Render an `environment` value: strings as is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _environment(value: Any) -> tuple[tuple[str, str], ...]:
    """Return the `environment` entries in order, skipping null values."""
    if not isinstance(value, dict):
        return ()
    return tuple((str(name), _env_value(item)) for name, item in value.items() if item is not None)


def _names(value: Any) -> tuple[str, ...]:
    """Return the string items of a list, in order."""
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str))


def _output_type(config: Mapping[str, Any]) -> str | None:
    """Return the default emit type: absent → `executor_result`, explicit null → None."""
    if "output_message_type" not in config:
        return DEFAULT_OUTPUT_TYPE
    value = config["output_message_type"]
    if value is None or isinstance(value, str):
        return value
    return DEFAULT_OUTPUT_TYPE


# --------------------------------------------------------------------------------------------------
# Names, backoff, errors (§7.5.2, §7.5.3, §7.5.6, §7.5.9)


def sandbox_name(prefix: str, job_id: str, agent_id: str) -> str:
    """Return `<prefix>-<job_id>-<agent_id>` lower-cased, limited to [a-z0-9-], trimmed of `-`."""
    raw = f"{prefix}-{job_id}-{agent_id}".lower()
    return _NAME_UNSAFE_RE.sub("-", raw).strip("-")


def backoff_ms(settings: ExecutorSettings, attempt_k: int) -> int:
    """Return the sleep before attempt k+1: `retry_backoff_ms × 2^(k−1)`."""
    exponent: int = max(attempt_k - 1, 0)
    return settings.retry_backoff_ms * (1 << exponent)


def format_seconds(seconds: float) -> str:
    """Render seconds without a decimal part when whole (`1`, `2.5`)."""
    value = float(seconds)
    return str(int(value)) if value.is_integer() else repr(value)


def timeout_error(seconds: float) -> str:
    """Return the timeout sentence, e.g. `timed out after 1 s`."""
    return f"timed out after {format_seconds(seconds)} s"


def exit_error(exit_code: int) -> str:
    """Return the sentence of a non-zero exit status."""
    return f"command exited with status {exit_code}"


def is_transient(error_obj: Mapping[str, Any]) -> bool:
    """Tell whether an error object mentions one of the transient markers of §7.5.9."""
    parts = [_field_text(error_obj.get(key)) for key in ("error", "logs", "raw_output", "stderr", "stdout")]
    parts.append(json.dumps(error_obj, ensure_ascii=False, default=str))
    haystack = "".join(parts).lower()
    return any(marker in haystack for marker in TRANSIENT_MARKERS)


def _field_text(value: Any) -> str:
    """Render one error-object field as text (null as empty)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------------------------------
# Working directory, placeholders and environment (§7.5.3–§7.5.5)


def resolve_workdir(settings: ExecutorSettings, staging_dir: str) -> str:
    """Map the configured workdir onto the staging directory as §7.5.3 describes."""
    workdir = settings.workdir
    if workdir is None:
        return staging_dir
    root = settings.sandbox_upload_path.rstrip("/")
    if workdir.rstrip("/") == root:
        return staging_dir
    if workdir.startswith(root + "/"):
        return os.path.normpath(os.path.join(staging_dir, workdir[len(root) + 1 :]))
    if os.path.isabs(workdir):
        return workdir
    return os.path.normpath(os.path.join(staging_dir, workdir))


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace `{{name}}` and `{name}` for the seven known placeholders; leave other braces alone."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, match.group(0))

    return _PLACEHOLDER_RE.sub(replace, text)


def staged_files(staging_dir: str) -> dict[str, str]:
    """Return the absolute paths of the five files, keyed by placeholder name."""
    return {
        "input_file": os.path.join(staging_dir, INPUT_FILE),
        "context_file": os.path.join(staging_dir, CONTEXT_FILE),
        "message_file": os.path.join(staging_dir, MESSAGE_FILE),
        "body_file": os.path.join(staging_dir, BODY_FILE),
    }


@dataclass(frozen=True)
class ProcessContext:
    """The facts of one attempt that the process environment and placeholders expose."""

    job_id: str
    agent_id: str
    agent_type: str
    template: str
    staging_dir: str
    workdir: str
    content_type: str
    content_encoding: str


def placeholder_values(ctx: ProcessContext) -> dict[str, str]:
    """Return the values of the seven placeholders of §7.5.5."""
    return {
        **staged_files(ctx.staging_dir),
        "workdir": ctx.workdir,
        "job_id": ctx.job_id,
        "agent_id": ctx.agent_id,
    }


def runtime_variables(ctx: ProcessContext) -> dict[str, str]:
    """Return the eleven MIRROR_NEURON_* variables of §7.5.4, in the listed order."""
    files = staged_files(ctx.staging_dir)
    return {
        "MIRROR_NEURON_INPUT_FILE": files["input_file"],
        "MIRROR_NEURON_CONTEXT_FILE": files["context_file"],
        "MIRROR_NEURON_MESSAGE_FILE": files["message_file"],
        "MIRROR_NEURON_BODY_FILE": files["body_file"],
        "MIRROR_NEURON_BODY_CONTENT_TYPE": ctx.content_type,
        "MIRROR_NEURON_BODY_CONTENT_ENCODING": ctx.content_encoding,
        "MIRROR_NEURON_AGENT_TYPE": ctx.agent_type,
        "MIRROR_NEURON_AGENT_TEMPLATE": ctx.template,
        "MIRROR_NEURON_JOB_ID": ctx.job_id,
        "MIRROR_NEURON_AGENT_ID": ctx.agent_id,
        "MIRROR_NEURON_WORKDIR": ctx.workdir,
    }


def process_environment(
    base_env: Mapping[str, str], ctx: ProcessContext, settings: ExecutorSettings
) -> dict[str, str]:
    """Build the process environment in the order of §7.5.4 (later wins)."""
    env = {name: value for name, value in base_env.items() if not name.startswith(ENV_PREFIX)}
    env.update(runtime_variables(ctx))
    env.update(settings.environment)
    env.update({name: base_env[name] for name in settings.pass_env if name in base_env})
    return env


def process_argv(command: str | tuple[str, ...], values: Mapping[str, str]) -> list[str]:
    """Return the argv to run: `bash -lc <cmd>` for a string, the substituted list otherwise."""
    if isinstance(command, str):
        return ["bash", "-lc", substitute(command, values)]
    return [substitute(item, values) for item in command]


def effective_encoding(settings: ExecutorSettings, message: Mapping[str, Any]) -> tuple[str, str]:
    """Return the (content_type, content_encoding) used for the body file."""
    envelope = message.get("envelope")
    env = envelope if isinstance(envelope, dict) else {}
    content_type = settings.content_type or _str_or(env.get("content_type"), "application/json")
    encoding = settings.content_encoding or _str_or(env.get("content_encoding"), "identity")
    return content_type, encoding


def context_document(ctx: ProcessContext, agent_state: Any, timestamp: str) -> dict[str, Any]:
    """Return the content of `mirror_neuron_context.json`."""
    return {
        "job_id": ctx.job_id,
        "agent_id": ctx.agent_id,
        "agent_type": ctx.agent_type,
        "template_type": ctx.template,
        "agent_state": {} if agent_state is None else agent_state,
        "timestamp": timestamp,
    }


# --------------------------------------------------------------------------------------------------
# Run result, output payload and failure details (§7.5.2, §7.5.6, §7.5.8)


@dataclass(frozen=True)
class RunResult:
    """What one attempt observed; `run_result_object` renders it as the §7.5.6 object."""

    sandbox_name: str
    remote_dir: str
    node_name: str
    duration_ms: int
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False


def run_result_object(result: RunResult) -> dict[str, Any]:
    """Return the run result object of §7.5.6 (with `timed_out`, Appendix B.17)."""
    return {
        "sandbox_name": result.sandbox_name,
        "remote_dir": result.remote_dir,
        "exit_code": result.exit_code,
        "runner_exit_code": result.exit_code,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "stdout_truncated": result.stdout_truncated,
        "stderr_truncated": result.stderr_truncated,
        "logs": "",
        "raw_output": result.stdout,
        "runner": RUNNER,
        "node_name": result.node_name,
        "duration_ms": result.duration_ms,
        "timed_out": result.timed_out,
    }


def output_payload(
    agent_id: str,
    run_result: Mapping[str, Any],
    attempts: int,
    lease: Mapping[str, Any],
    input_body: Any,
) -> dict[str, Any]:
    """Return the executor's output payload: agent id, run result + attempts + lease, input."""
    sandbox = {**run_result, "attempts": attempts, "lease": dict(lease)}
    return {"agent_id": agent_id, "sandbox": sandbox, "input": input_body}


def failure_details(run_result: Mapping[str, Any] | None, error: str, attempts: int) -> dict[str, Any]:
    """Return `result.details` of a failed executor step (§7.5.8)."""
    base = dict(run_result) if run_result is not None else {}
    return {**base, "error": error, "attempts": attempts}


def failure_result(agent_id: str, details: Mapping[str, Any]) -> dict[str, Any]:
    """Return the `result` of a failed executor step: agent id, error sentence, details."""
    return {"agent_id": agent_id, "error": details["error"], "details": dict(details)}


# --------------------------------------------------------------------------------------------------
# Structured stdout (§7.5.7)


@dataclass(frozen=True)
class NextState:
    """Replace the agent's `agent_state`."""

    state: Any


@dataclass(frozen=True)
class CustomEvent:
    """Append a custom event of `type` with `payload`."""

    type: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Emit:
    """Emit a message: to the edges matching `type`, or directly to `to` when set."""

    type: str
    to: str | None
    body: Any
    options: dict[str, Any]


@dataclass(frozen=True)
class Complete:
    """Complete the job with `result`."""

    result: Any


@dataclass(frozen=True)
class CompleteWithOutput:
    """Complete the job with the executor's output payload."""


Action = NextState | CustomEvent | Emit | Complete | CompleteWithOutput


def parse_structured_stdout(stdout: str, truncated: bool) -> dict[str, Any] | None:
    """Return stdout as a structured object when it is one JSON object with a structured key."""
    if truncated:
        return None
    text = stdout.strip()
    try:
        parsed = json.loads(
            text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=int_hook(text, strict=True)
        )
    except (ValueError, RecursionError) as exc:
        if is_out_of_range(exc):
            raise  # SPEC C.1.2: fails the step, not "unstructured output"
        return None
    if not isinstance(parsed, dict) or not any(key in parsed for key in STRUCTURED_KEYS):
        return None
    cleaned: dict[str, Any] = _without_nul(parsed)
    return cleaned


def _finite_float(text: str) -> float:
    """Parse a JSON number, refusing ones beyond float range (1e400 would become inf)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number out of range: {text}")
    return value


def _reject_constant(name: str) -> Any:
    """Refuse the non-standard JSON constants NaN and ±Infinity."""
    raise ValueError(f"unsupported JSON constant {name}")


def _without_nul(value: Any) -> Any:
    """Replace U+0000 by U+FFFD in every string of a JSON value (Appendix B.3)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


def structured_actions(obj: Mapping[str, Any], reserved_types: frozenset[str]) -> list[Action]:
    """Return the actions of a structured stdout object in the order of §7.5.7."""
    actions: list[Action] = []
    if "next_state" in obj:
        actions.append(NextState(obj["next_state"]))
    actions.extend(_custom_events(obj.get("events"), reserved_types))
    actions.extend(_emits(obj.get("emit_messages")))
    result = obj.get("complete_job")
    if result is not None and result is not False:
        actions.append(Complete(result))
    if obj.get("complete_job?") is True:
        actions.append(CompleteWithOutput())
    return actions


def _custom_events(items: Any, reserved_types: frozenset[str]) -> list[Action]:
    """Return the valid custom events; invalid items and reserved types are skipped."""
    if not isinstance(items, list):
        return []
    events: list[Action] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            continue
        payload = item.get("payload", {})
        if isinstance(payload, dict) and item["type"] not in reserved_types:
            events.append(CustomEvent(item["type"], payload))
    return events


def _emits(items: Any) -> list[Action]:
    """Return one emit per valid `emit_messages` item."""
    if not isinstance(items, list):
        return []
    return [_emit(item) for item in items if isinstance(item, dict) and isinstance(item.get("type"), str)]


def _emit(item: Mapping[str, Any]) -> Emit:
    """Build the emit of one `emit_messages` item."""
    to = item.get("to")
    return Emit(
        type=item["type"],
        to=to if isinstance(to, str) else None,
        body=_emit_body(item),
        options=_emit_options(item),
    )


def _emit_body(item: Mapping[str, Any]) -> Any:
    """Return the body: `body_base64` decoded, else `body`, else `payload`, else `{}`."""
    decoded = _decode_base64(item.get("body_base64"))
    if decoded is not None:
        return binary_body(decoded)
    if "body" in item:
        return item["body"]
    if "payload" in item:
        return item["payload"]
    return {}


def _decode_base64(value: Any) -> bytes | None:
    """Decode standard base64 text; None when the value is not valid base64 text."""
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def binary_body(data: bytes) -> Any:
    """Return UTF-8 text without NUL as a string, any other bytes as `{"$base64": ...}`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        return text
    return {"$base64": base64.b64encode(data).decode("ascii")}


def _emit_options(item: Mapping[str, Any]) -> dict[str, Any]:
    """Return the emit options an item sets (null or ill-typed values mean "inherit")."""
    options = {key: item[key] for key in EMIT_STRING_OPTIONS if isinstance(item.get(key), str)}
    if isinstance(item.get("headers"), dict):
        options["headers"] = item["headers"]
    if isinstance(item.get("artifacts"), list):
        options["artifacts"] = item["artifacts"]
    if isinstance(item.get("stream"), dict):
        options["stream"] = item["stream"]
    return options
