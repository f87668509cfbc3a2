"""Pure executor rules: settings, names, placeholders, structured stdout, results (SPEC §7.5)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from app.domain.executor import (
    Complete,
    CompleteWithOutput,
    CustomEvent,
    Emit,
    ExecutorSettings,
    NextState,
    ProcessContext,
    RunResult,
    backoff_ms,
    binary_body,
    effective_encoding,
    executor_settings,
    failure_details,
    failure_result,
    is_transient,
    output_payload,
    parse_structured_stdout,
    process_argv,
    process_environment,
    resolve_workdir,
    run_result_object,
    sandbox_name,
    structured_actions,
    substitute,
    timeout_error,
)

RESERVED = frozenset({"job_completed", "message_delivered"})


# --------------------------------------------------------------------------------------------------
# Settings


def test_defaults() -> None:
    settings = executor_settings({}, 3600)
    assert settings == ExecutorSettings(timeout_seconds=3600.0)
    assert settings.pool == "default"
    assert settings.pool_slots == 1
    assert settings.output_message_type == "executor_result"
    assert settings.retry_backoff_ms == 500
    assert settings.name_prefix == "host-local"
    assert settings.sandbox_upload_path == "/sandbox/job"
    assert settings.command is None


def test_explicit_null_output_type_means_no_emit() -> None:
    assert executor_settings({"output_message_type": None}, 1).output_message_type is None
    assert executor_settings({"output_message_type": "x"}, 1).output_message_type == "x"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3), (1, 1), (0, 1), (-2, 1), (2.5, 1), (2.0, 1), ("3", 1), (True, 1), (None, 1)],
)
def test_slot_and_attempt_coercion(value: Any, expected: int) -> None:
    settings = executor_settings({"pool_slots": value, "max_attempts": value}, 1)
    assert (settings.pool_slots, settings.max_attempts) == (expected, expected)


@pytest.mark.parametrize(("value", "expected"), [("gpu", "gpu"), (7, "7"), (True, "true"), (None, "default")])
def test_pool_is_text(value: Any, expected: str) -> None:
    assert executor_settings({"pool": value}, 1).pool == expected


def test_other_keys() -> None:
    config = {
        "command": ["python3", "x.py"],
        "workdir": "/sandbox/job/w",
        "sandbox_upload_path": "/sb",
        "environment": {"A": "a", "N": 2, "B": True, "O": {"k": [1]}, "Z": None},
        "pass_env": ["HOME", 3, "PATH"],
        "complete_job": True,
        "retry_backoff_ms": 100,
        "startup_delay_ms": 25,
        "timeout_seconds": 2.5,
        "name_prefix": "np",
        "content_type": "text/plain",
        "content_encoding": "gzip",
        "runner_module": "ignored",
        "ssh_key": "ignored",
    }
    settings = executor_settings(config, 3600)
    assert settings.command == ("python3", "x.py")
    assert settings.environment == (("A", "a"), ("N", "2"), ("B", "true"), ("O", '{"k":[1]}'))
    assert settings.pass_env == ("HOME", "PATH")
    assert settings.complete_job is True
    assert (settings.retry_backoff_ms, settings.startup_delay_ms) == (100, 25)
    assert settings.timeout_seconds == 2.5
    assert (settings.name_prefix, settings.workdir, settings.sandbox_upload_path) == (
        "np",
        "/sandbox/job/w",
        "/sb",
    )
    assert (settings.content_type, settings.content_encoding) == ("text/plain", "gzip")


def test_string_command_and_default_timeout() -> None:
    settings = executor_settings({"command": "echo hi", "timeout_seconds": None}, 12)
    assert settings.command == "echo hi"
    assert settings.timeout_seconds == 12.0


# --------------------------------------------------------------------------------------------------
# Names, backoff, errors


def test_sandbox_name() -> None:
    assert sandbox_name("host-local", "Flow_v1-1711623600000-1c50c86dc919", "Worker.A") == (
        "host-local-flow-v1-1711623600000-1c50c86dc919-worker-a"
    )
    assert sandbox_name("-X", "j", "a b_") == "x-j-a-b"


def test_backoff() -> None:
    settings = ExecutorSettings(retry_backoff_ms=100)
    assert [backoff_ms(settings, k) for k in (1, 2, 3, 4)] == [100, 200, 400, 800]


def test_timeout_error() -> None:
    assert timeout_error(1) == "timed out after 1 s"
    assert timeout_error(1.0) == "timed out after 1 s"
    assert timeout_error(2.5) == "timed out after 2.5 s"
    assert timeout_error(3600) == "timed out after 3600 s"


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"error": "timed out after 1 s"}, True),
        ({"error": "command exited with status 1", "stderr": "Connection Refused by peer"}, True),
        ({"error": "command exited with status 1", "stdout": "service UNAVAILABLE"}, True),
        ({"error": "command exited with status 1", "details": {"x": "h2 protocol error"}}, True),
        ({"error": "command exited with status 3", "stdout": "", "stderr": "boom"}, False),
        ({"error": "command exited with status 1", "exit_code": 1, "logs": "", "raw_output": "ok"}, False),
    ],
)
def test_transient(obj: dict[str, Any], expected: bool) -> None:
    assert is_transient(obj) is expected


# --------------------------------------------------------------------------------------------------
# Workdir, placeholders, environment


@pytest.mark.parametrize(
    ("workdir", "expected"),
    [
        (None, "/tmp/s"),
        ("/sandbox/job", "/tmp/s"),
        ("/sandbox/job/", "/tmp/s"),
        ("/sandbox/job/word_count", "/tmp/s/word_count"),
        ("/sandbox/job/a/b", "/tmp/s/a/b"),
        ("rel/dir", "/tmp/s/rel/dir"),
        ("/opt/elsewhere", "/opt/elsewhere"),
        ("/sandbox/jobs", "/sandbox/jobs"),
    ],
)
def test_resolve_workdir(workdir: str | None, expected: str) -> None:
    assert resolve_workdir(ExecutorSettings(workdir=workdir), "/tmp/s") == expected


def test_substitute_both_syntaxes_and_leaves_other_braces() -> None:
    values = {"job_id": "J", "agent_id": "A", "input_file": "/in.json"}
    assert substitute("{{job_id}}/{agent_id} {input_file}", values) == "J/A /in.json"
    assert substitute("{{{job_id}}}", values) == "{J}"
    assert substitute("{other} {{other}} {workdir} ${HOME} {'a': 1}", values) == (
        "{other} {{other}} {workdir} ${HOME} {'a': 1}"
    )
    assert substitute("{job_id}", {"job_id": "{agent_id}", "agent_id": "x"}) == "{agent_id}"


def test_process_argv() -> None:
    values = {"job_id": "J"}
    assert process_argv("echo {job_id}", values) == ["bash", "-lc", "echo J"]
    assert process_argv(("echo", "{{job_id}}", "x y"), values) == ["echo", "J", "x y"]


def _ctx() -> ProcessContext:
    return ProcessContext("J", "A", "executor", "map", "/st", "/st/w", "application/json", "gzip")


def test_environment_order() -> None:
    base = {"PATH": "/bin", "MIRROR_NEURON_API_TOKEN": "secret", "MIRROR_NEURON_X": "x", "KEEP": "k"}
    settings = ExecutorSettings(
        environment=(("KEEP", "over"), ("NEW", "1")), pass_env=("MIRROR_NEURON_X", "ABSENT")
    )
    env = process_environment(base, _ctx(), settings)
    assert "MIRROR_NEURON_API_TOKEN" not in env
    assert "ABSENT" not in env
    assert env["MIRROR_NEURON_X"] == "x"
    assert env["KEEP"] == "over"
    assert env["NEW"] == "1"
    assert env["MIRROR_NEURON_INPUT_FILE"] == "/st/mirror_neuron_input.json"
    assert env["MIRROR_NEURON_BODY_FILE"] == "/st/mirror_neuron_body.bin"
    assert env["MIRROR_NEURON_WORKDIR"] == "/st/w"
    assert env["MIRROR_NEURON_AGENT_TEMPLATE"] == "map"
    assert env["MIRROR_NEURON_BODY_CONTENT_ENCODING"] == "gzip"
    assert sorted(name for name in env if name.startswith("MIRROR_NEURON_")) == sorted(
        [
            "MIRROR_NEURON_INPUT_FILE",
            "MIRROR_NEURON_CONTEXT_FILE",
            "MIRROR_NEURON_MESSAGE_FILE",
            "MIRROR_NEURON_BODY_FILE",
            "MIRROR_NEURON_BODY_CONTENT_TYPE",
            "MIRROR_NEURON_BODY_CONTENT_ENCODING",
            "MIRROR_NEURON_AGENT_TYPE",
            "MIRROR_NEURON_AGENT_TEMPLATE",
            "MIRROR_NEURON_JOB_ID",
            "MIRROR_NEURON_AGENT_ID",
            "MIRROR_NEURON_WORKDIR",
            "MIRROR_NEURON_X",
        ]
    )


def test_pass_env_wins_over_runtime_variables() -> None:
    base = {"MIRROR_NEURON_JOB_ID": "from-server"}
    env = process_environment(base, _ctx(), ExecutorSettings(pass_env=("MIRROR_NEURON_JOB_ID",)))
    assert env["MIRROR_NEURON_JOB_ID"] == "from-server"


def test_effective_encoding() -> None:
    message = {"envelope": {"content_type": "text/plain", "content_encoding": "gzip"}}
    assert effective_encoding(ExecutorSettings(), message) == ("text/plain", "gzip")
    assert effective_encoding(ExecutorSettings(content_encoding="identity"), message) == (
        "text/plain",
        "identity",
    )
    assert effective_encoding(ExecutorSettings(), {}) == ("application/json", "identity")


# --------------------------------------------------------------------------------------------------
# Structured stdout


def test_structured_stdout_detection() -> None:
    assert parse_structured_stdout('  {"complete_job": 1}\n', False) == {"complete_job": 1}
    assert parse_structured_stdout('{"complete_job?": true}', False) == {"complete_job?": True}
    assert parse_structured_stdout('{"complete_job": 1}', True) is None
    assert parse_structured_stdout('{"other": 1}', False) is None
    assert parse_structured_stdout("[1]", False) is None
    assert parse_structured_stdout('{"events": []}\n{"events": []}', False) is None
    assert parse_structured_stdout("not json", False) is None
    assert parse_structured_stdout('{"next_state": NaN}', False) is None
    assert parse_structured_stdout("", False) is None
    assert parse_structured_stdout('{"next_state": "a\\u0000b"}', False) == {"next_state": "a\ufffdb"}


def test_action_order_and_filtering() -> None:
    obj = {
        "complete_job?": True,
        "complete_job": {"done": 1},
        "emit_messages": [
            {"type": "t1", "body": {"x": 1}},
            "junk",
            {"to": "b"},
            {"type": "t2", "to": "b", "payload": [1], "headers": {"h": "v"}, "class": "command"},
            {"type": "t3"},
        ],
        "events": [
            {"type": "custom_a", "payload": {"v": 1}},
            {"type": "custom_b"},
            {"type": "job_completed", "payload": {}},
            {"type": "bad_payload", "payload": [1]},
            {"type": "null_payload", "payload": None},
            {"payload": {}},
            5,
        ],
        "next_state": {"n": 2},
    }
    assert structured_actions(obj, RESERVED) == [
        NextState({"n": 2}),
        CustomEvent("custom_a", {"v": 1}),
        CustomEvent("custom_b", {}),
        Emit("t1", None, {"x": 1}, {}),
        Emit("t2", "b", [1], {"class": "command", "headers": {"h": "v"}}),
        Emit("t3", None, {}, {}),
        Complete({"done": 1}),
        CompleteWithOutput(),
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, []), (False, []), (True, [Complete(True)]), (0, [Complete(0)]), ("x", [Complete("x")])],
)
def test_complete_job_values(value: Any, expected: list[Any]) -> None:
    assert structured_actions({"complete_job": value}, RESERVED) == expected


def test_complete_job_question_requires_true() -> None:
    assert structured_actions({"complete_job?": 1}, RESERVED) == []
    assert structured_actions({"complete_job?": False}, RESERVED) == []


def test_emit_body_base64() -> None:
    text = base64.b64encode("héllo".encode()).decode()
    raw = base64.b64encode(b"\xff\x00\x01").decode()
    nul = base64.b64encode(b"a\x00b").decode()
    items = [
        {"type": "t", "body_base64": text, "body": "ignored"},
        {"type": "t", "body_base64": raw},
        {"type": "t", "body_base64": nul},
        {"type": "t", "body_base64": "!!not base64", "body": "fallback"},
        {"type": "t", "body": None, "payload": "p"},
    ]
    bodies = [action.body for action in structured_actions({"emit_messages": items}, RESERVED)]  # type: ignore[union-attr]
    assert bodies == ["héllo", {"$base64": raw}, {"$base64": nul}, "fallback", None]
    assert binary_body(b"abc") == "abc"


def test_emit_options() -> None:
    item = {
        "type": "t",
        "class": "command",
        "correlation_id": "c",
        "causation_id": "m",
        "content_type": "text/plain",
        "content_encoding": "gzip",
        "headers": {"a": "b"},
        "artifacts": [{"k": 1}],
        "stream": {"stream_id": "s", "seq": 1},
        "priority": 5,
    }
    (emit,) = structured_actions({"emit_messages": [item]}, RESERVED)
    assert isinstance(emit, Emit)
    assert emit.options == {key: item[key] for key in item if key not in ("type", "priority")}
    (plain,) = structured_actions(
        {"emit_messages": [{"type": "t", "headers": None, "class": None}]}, RESERVED
    )
    assert isinstance(plain, Emit) and plain.options == {}


# --------------------------------------------------------------------------------------------------
# Results


def _result(**changes: Any) -> dict[str, Any]:
    return run_result_object(RunResult("sb", "/w", "node-1", 12, **changes))


def test_run_result_object() -> None:
    assert _result(exit_code=0, stdout="out") == {
        "sandbox_name": "sb",
        "remote_dir": "/w",
        "exit_code": 0,
        "runner_exit_code": 0,
        "stdout": "out",
        "stderr": "",
        "stdout_truncated": False,
        "stderr_truncated": False,
        "logs": "",
        "raw_output": "out",
        "runner": "host_local",
        "node_name": "node-1",
        "duration_ms": 12,
        "timed_out": False,
    }


def test_output_payload() -> None:
    run = _result(exit_code=0)
    lease = {"lease_id": "L", "pool": "default"}
    payload = output_payload("worker", run, 2, lease, {"in": 1})
    assert payload == {
        "agent_id": "worker",
        "sandbox": {**run, "attempts": 2, "lease": lease},
        "input": {"in": 1},
    }


def test_failure_details() -> None:
    run = _result(exit_code=3)
    details = failure_details(run, "command exited with status 3", 1)
    assert details == {**run, "error": "command exited with status 3", "attempts": 1}
    assert failure_details(None, 'unknown executor pool "gpu"', 0) == {
        "error": 'unknown executor pool "gpu"',
        "attempts": 0,
    }
    assert failure_result("a", details) == {
        "agent_id": "a",
        "error": "command exited with status 3",
        "details": details,
    }
