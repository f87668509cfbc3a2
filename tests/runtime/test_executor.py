"""One executor attempt with real subprocesses (SPEC §7.5.3–§7.5.6, Appendix B.3, B.17, B.19)."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import sys
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.domain.executor import ExecutorSettings, executor_settings
from app.domain.manifest import Upload
from app.runtime import executor as executor_module
from app.runtime.executor import AttemptOutcome, AttemptRequest, run_attempt

JOB_ID = "flow_v1-1711623600000-1c50c86dc919"
BODY = {"text": "héllo wörld", "n": [1, 2]}
MESSAGE: dict[str, Any] = {
    "envelope": {
        "spec_version": "mn-msg/1",
        "message_id": "abcdefghijklmn",
        "job_id": JOB_ID,
        "from": "seed",
        "to": "worker",
        "type": "init",
        "class": "command",
        "timestamp": "2024-03-28T11:00:00.000Z",
        "correlation_id": "c0",
        "attempt": 1,
        "priority": 100,
        "content_type": "application/json",
        "content_encoding": "identity",
    },
    "headers": {},
    "body": BODY,
    "artifacts": [],
    "stream": None,
}
PYTHON = sys.executable


def _request(tmp_path: Path, config: dict[str, Any], **changes: Any) -> AttemptRequest:
    """Build an attempt request whose temp and payloads directories live under tmp_path."""
    (tmp_path / "temp").mkdir(exist_ok=True)
    (tmp_path / "payloads").mkdir(exist_ok=True)
    request = AttemptRequest(
        job_id=JOB_ID,
        agent_id="worker",
        agent_type="executor",
        template="map",
        settings=executor_settings(config, 3600),
        uploads=[],
        message=MESSAGE,
        body=BODY,
        agent_state={"seen": 1},
        payloads_dir=str(tmp_path / "payloads"),
        node_name="node-a",
        temp_dir=str(tmp_path / "temp"),
        output_cap_bytes=1024 * 1024,
        base_env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")},
    )
    return replace(request, **changes)


def _alive(pid: int) -> bool:
    """Tell whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _wait_for_file(path: Path, timeout: float = 5.0) -> str:
    """Wait until a file exists with content and return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


async def _settle_dead(pid: int, timeout: float = 1.0) -> bool:
    """Return True once the process is gone (reaping by init may lag a little)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        await asyncio.sleep(0.02)
    return False


def _staging_left(tmp_path: Path) -> list[str]:
    return os.listdir(tmp_path / "temp")


# --------------------------------------------------------------------------------------------------
# Exit status and output


async def test_success_run_result(tmp_path: Path) -> None:
    outcome = await run_attempt(_request(tmp_path, {"command": "echo out; echo err >&2"}))
    assert outcome.ok and outcome.error is None and not outcome.transient
    result = outcome.run_result
    assert result["exit_code"] == 0 and result["runner_exit_code"] == 0
    assert (result["stdout"], result["stderr"], result["raw_output"]) == ("out\n", "err\n", "out\n")
    assert (result["stdout_truncated"], result["stderr_truncated"], result["timed_out"]) == (
        False,
        False,
        False,
    )
    assert (result["runner"], result["logs"], result["node_name"]) == ("host_local", "", "node-a")
    assert result["sandbox_name"] == outcome.sandbox_name == f"host-local-{JOB_ID.replace('_', '-')}-worker"
    assert os.path.basename(result["remote_dir"]).startswith(
        f"mirror_neuron_host_local_{outcome.sandbox_name}_"
    )
    assert len(os.path.basename(result["remote_dir"]).rsplit("_", 1)[1]) == 8
    assert isinstance(result["duration_ms"], int)
    assert _staging_left(tmp_path) == []


async def test_exit_3_is_a_non_transient_failure(tmp_path: Path) -> None:
    outcome = await run_attempt(_request(tmp_path, {"command": ["bash", "-c", "echo partial; exit 3"]}))
    assert not outcome.ok
    assert outcome.error == "command exited with status 3"
    assert outcome.exit_code == 3 and outcome.run_result["stdout"] == "partial\n"
    assert outcome.transient is False
    assert _staging_left(tmp_path) == []


async def test_killed_by_signal_is_128_plus_n(tmp_path: Path) -> None:
    outcome = await run_attempt(_request(tmp_path, {"command": ["bash", "-c", "kill -9 $$"]}))
    assert outcome.exit_code == 137
    assert outcome.error == "command exited with status 137"


async def test_transient_marker_in_stderr(tmp_path: Path) -> None:
    outcome = await run_attempt(_request(tmp_path, {"command": "echo 'Connection refused' >&2; exit 1"}))
    assert outcome.error == "command exited with status 1"
    assert outcome.transient is True


async def test_output_is_utf8_with_replacement_and_no_nul(tmp_path: Path) -> None:
    outcome = await run_attempt(_request(tmp_path, {"command": r"printf 'a\xffb\000c'; printf '\000' >&2"}))
    assert outcome.run_result["stdout"] == "a\ufffdb\ufffdc"
    assert outcome.run_result["stderr"] == "\ufffd"


async def test_stdout_cap_truncates_in_bounded_memory(tmp_path: Path) -> None:
    command = "head -c 50000000 /dev/zero; head -c 3000 /dev/zero | tr '\\0' e >&2"
    request = _request(tmp_path, {"command": command}, output_cap_bytes=1024 * 1024)
    tracemalloc.start()
    try:
        outcome = await run_attempt(request)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert outcome.ok
    assert outcome.run_result["stdout_truncated"] is True
    assert outcome.run_result["stdout"] == "\ufffd" * (1024 * 1024)
    assert outcome.run_result["stderr_truncated"] is False
    assert outcome.run_result["stderr"] == "e" * 3000
    assert peak < 24 * 1024 * 1024


async def test_stderr_cap_is_separate(tmp_path: Path) -> None:
    request = _request(
        tmp_path, {"command": "echo hi; head -c 5000 /dev/zero | tr '\\0' x >&2"}, output_cap_bytes=100
    )
    outcome = await run_attempt(request)
    assert (outcome.run_result["stdout"], outcome.run_result["stdout_truncated"]) == ("hi\n", False)
    assert (outcome.run_result["stderr"], outcome.run_result["stderr_truncated"]) == ("x" * 100, True)


async def test_no_command_succeeds_without_a_process(tmp_path: Path) -> None:
    outcome = await run_attempt(_request(tmp_path, {}))
    assert outcome.ok and outcome.exit_code == 0
    assert outcome.run_result["stdout"] == "no command configured for executor worker\n"
    assert outcome.run_result["timed_out"] is False
    assert _staging_left(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# Timeout and cancellation


async def test_timeout_kills_the_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    command = f"sleep 30 & echo $! > {pid_file}; sleep 30"
    started = time.monotonic()
    outcome = await run_attempt(_request(tmp_path, {"command": command, "timeout_seconds": 1}))
    elapsed = time.monotonic() - started
    assert outcome.error == "timed out after 1 s"
    assert outcome.run_result["timed_out"] is True
    assert outcome.exit_code is None and outcome.run_result["runner_exit_code"] is None
    assert outcome.transient is True
    assert 0.9 < elapsed < 3.0
    assert await _settle_dead(int(pid_file.read_text()))
    assert _staging_left(tmp_path) == []


async def test_timeout_escalates_to_sigkill(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    command = f"trap '' TERM; sleep 30 & echo $! > {pid_file}; wait"
    started = time.monotonic()
    outcome = await run_attempt(_request(tmp_path, {"command": command, "timeout_seconds": 0.5}))
    elapsed = time.monotonic() - started
    assert outcome.error == "timed out after 0.5 s"
    assert 2.4 < elapsed < 4.0
    assert await _settle_dead(int(pid_file.read_text()))


async def test_cancel_terminates_the_group_and_reraises(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    command = f"sleep 30 & echo $! > {pid_file}; wait"
    task = asyncio.ensure_future(run_attempt(_request(tmp_path, {"command": command})))
    child = int(await _wait_for_file(pid_file))
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 3.0
    assert await _settle_dead(child)
    assert _staging_left(tmp_path) == []


async def test_cancel_escalates_to_sigkill(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    command = f"trap '' TERM; sleep 30 & echo $! > {pid_file}; wait"
    task = asyncio.ensure_future(run_attempt(_request(tmp_path, {"command": command})))
    child = int(await _wait_for_file(pid_file))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _settle_dead(child)
    assert _staging_left(tmp_path) == []


async def test_leftover_background_processes_are_killed_after_exit(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    command = f"sleep 30 >/dev/null 2>&1 & echo $! > {pid_file}; echo done"
    outcome = await run_attempt(_request(tmp_path, {"command": command}))
    assert outcome.ok and outcome.run_result["stdout"] == "done\n"
    assert await _settle_dead(int(pid_file.read_text()))


# --------------------------------------------------------------------------------------------------
# Commands, placeholders, environment


async def test_list_command_is_argv_with_placeholders(tmp_path: Path) -> None:
    argv = [PYTHON, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
    argv += ["{job_id}", "{{agent_id}}", "{workdir}", "{input_file}", "{body_file}", "{other}", "$HOME a"]
    outcome = await run_attempt(_request(tmp_path, {"command": argv}))
    args = json.loads(outcome.run_result["stdout"])
    workdir = outcome.run_result["remote_dir"]
    assert args == [
        JOB_ID,
        "worker",
        workdir,
        f"{workdir}/mirror_neuron_input.json",
        f"{workdir}/mirror_neuron_body.bin",
        "{other}",
        "$HOME a",
    ]


async def test_string_command_runs_in_bash_with_placeholders(tmp_path: Path) -> None:
    command = "echo {{job_id}} {agent_id} {context_file} {nope} $0"
    outcome = await run_attempt(_request(tmp_path, {"command": command}))
    workdir = outcome.run_result["remote_dir"]
    assert (
        outcome.run_result["stdout"]
        == f"{JOB_ID} worker {workdir}/mirror_neuron_context.json {{nope}} bash\n"
    )


async def test_start_failure(tmp_path: Path) -> None:
    outcome = await run_attempt(_request(tmp_path, {"command": ["/nonexistent/program", "x"]}))
    assert not outcome.ok
    assert outcome.error is not None and outcome.error.startswith("failed to start command: ")
    assert "/nonexistent/program" in outcome.error
    assert outcome.exit_code is None and outcome.transient is False
    assert outcome.run_result["timed_out"] is False
    assert _staging_left(tmp_path) == []


@pytest.mark.parametrize("start", ["setpriv", "preexec hook", "asyncio subprocess"])
async def test_every_start_path_runs_and_captures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: str
) -> None:
    """setpriv (Linux), a preexec hook (no setpriv), asyncio's subprocesses (no pidfd_open)."""
    if start != "setpriv":
        monkeypatch.setattr(executor_module, "_SETPRIV", None)
    if start == "asyncio subprocess":
        monkeypatch.delattr(os, "pidfd_open")
    outcome = await run_attempt(_request(tmp_path, {"command": "echo out; echo err >&2; exit 3"}))
    assert (outcome.exit_code, outcome.run_result["stdout"], outcome.run_result["stderr"]) == (3, "out\n", "err\n")
    assert outcome.error == "command exited with status 3"


async def test_start_failure_of_a_program_not_on_path(tmp_path: Path) -> None:
    outcome = await run_attempt(_request(tmp_path, {"command": ["no-such-program-mn", "x"]}))
    assert outcome.error == "failed to start command: [Errno 2] No such file or directory: 'no-such-program-mn'"
    assert outcome.exit_code is None and outcome.transient is False


async def test_relative_program_runs_from_the_workdir(tmp_path: Path) -> None:
    (tmp_path / "payloads" / "tool").mkdir(parents=True)
    script = tmp_path / "payloads" / "tool" / "hello.sh"
    script.write_text("#!/bin/sh\necho \"hello $1\"\n")
    script.chmod(0o755)
    config = {"command": ["./hello.sh", "there"], "workdir": "/sandbox/job/tool"}
    outcome = await run_attempt(_request(tmp_path, config, uploads=[Upload("tool", "tool")]))
    assert outcome.ok, outcome.error
    assert outcome.run_result["stdout"] == "hello there\n"


async def test_environment_scrubbed_and_extended(tmp_path: Path) -> None:
    base_env = {
        "PATH": os.environ["PATH"],
        "MIRROR_NEURON_API_TOKEN": "secret",
        "MIRROR_NEURON_DATABASE_URL": "sqlite://",
        "MIRROR_NEURON_PASSED": "yes",
        "SERVER_ONLY": "s",
        "OVERRIDDEN": "server",
        "PASSED_PLAIN": "p",
    }
    config = {
        "command": [PYTHON, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
        "environment": {"OVERRIDDEN": "config", "NUM": 5, "OBJ": {"a": True}, "GONE": None},
        "pass_env": ["MIRROR_NEURON_PASSED", "PASSED_PLAIN", "NOT_SET"],
    }
    outcome = await run_attempt(_request(tmp_path, config, base_env=base_env))
    env = json.loads(outcome.run_result["stdout"])
    workdir = outcome.run_result["remote_dir"]
    assert "MIRROR_NEURON_API_TOKEN" not in env and "MIRROR_NEURON_DATABASE_URL" not in env
    assert env["MIRROR_NEURON_PASSED"] == "yes" and env["PASSED_PLAIN"] == "p"
    assert "NOT_SET" not in env and "GONE" not in env
    assert env["SERVER_ONLY"] == "s"
    assert (env["OVERRIDDEN"], env["NUM"], env["OBJ"]) == ("config", "5", '{"a":true}')
    assert {name: value for name, value in env.items() if name.startswith("MIRROR_NEURON_")} == {
        "MIRROR_NEURON_INPUT_FILE": f"{workdir}/mirror_neuron_input.json",
        "MIRROR_NEURON_CONTEXT_FILE": f"{workdir}/mirror_neuron_context.json",
        "MIRROR_NEURON_MESSAGE_FILE": f"{workdir}/mirror_neuron_message.json",
        "MIRROR_NEURON_BODY_FILE": f"{workdir}/mirror_neuron_body.bin",
        "MIRROR_NEURON_BODY_CONTENT_TYPE": "application/json",
        "MIRROR_NEURON_BODY_CONTENT_ENCODING": "identity",
        "MIRROR_NEURON_AGENT_TYPE": "executor",
        "MIRROR_NEURON_AGENT_TEMPLATE": "map",
        "MIRROR_NEURON_JOB_ID": JOB_ID,
        "MIRROR_NEURON_AGENT_ID": "worker",
        "MIRROR_NEURON_WORKDIR": workdir,
        "MIRROR_NEURON_PASSED": "yes",
    }


async def test_stdin_is_dev_null(tmp_path: Path) -> None:
    outcome = await run_attempt(_request(tmp_path, {"command": "cat; echo end"}))
    assert outcome.run_result["stdout"] == "end\n"


# --------------------------------------------------------------------------------------------------
# Files


async def test_files_written(tmp_path: Path) -> None:
    out = tmp_path / "copied"
    out.mkdir()
    outcome = await run_attempt(_request(tmp_path, {"command": f"cp mirror_neuron_* {out}/"}))
    assert outcome.ok
    assert sorted(os.listdir(out)) == [
        "mirror_neuron_body.bin",
        "mirror_neuron_body_meta.json",
        "mirror_neuron_context.json",
        "mirror_neuron_input.json",
        "mirror_neuron_message.json",
    ]
    assert (out / "mirror_neuron_input.json").read_text("utf-8") == json.dumps(
        BODY, indent=2, ensure_ascii=False
    )
    assert json.loads((out / "mirror_neuron_message.json").read_text("utf-8")) == MESSAGE
    assert json.loads((out / "mirror_neuron_body.bin").read_bytes()) == BODY
    assert json.loads((out / "mirror_neuron_body_meta.json").read_text()) == {
        "content_type": "application/json",
        "content_encoding": "identity",
    }
    context = json.loads((out / "mirror_neuron_context.json").read_text())
    timestamp = context.pop("timestamp")
    assert context == {
        "job_id": JOB_ID,
        "agent_id": "worker",
        "agent_type": "executor",
        "template_type": "map",
        "agent_state": {"seen": 1},
    }
    assert len(timestamp) == 24 and timestamp.endswith("Z")


async def test_gzip_body_file(tmp_path: Path) -> None:
    out = tmp_path / "body.bin"
    message = {**MESSAGE, "envelope": {**MESSAGE["envelope"], "content_encoding": "gzip"}}
    config = {"command": f'cp "$MIRROR_NEURON_BODY_FILE" {out}; echo $MIRROR_NEURON_BODY_CONTENT_ENCODING'}
    outcome = await run_attempt(_request(tmp_path, config, message=message))
    assert outcome.run_result["stdout"] == "gzip\n"
    assert json.loads(gzip.decompress(out.read_bytes())) == BODY


async def test_content_overrides_and_unsupported_encoding(tmp_path: Path) -> None:
    config = {"command": "cat mirror_neuron_body.bin", "content_type": "application/octet-stream"}
    outcome = await run_attempt(_request(tmp_path, config, body="raw text"))
    assert outcome.run_result["stdout"] == "raw text"
    bad = await run_attempt(_request(tmp_path, {"command": "echo never", "content_encoding": "br"}))
    assert not bad.ok and bad.error == 'unsupported content_encoding "br"'
    assert bad.transient is False and bad.run_result["stdout"] == ""
    assert _staging_left(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# Uploads and working directory


def _payloads(tmp_path: Path) -> Path:
    payloads = tmp_path / "payloads"
    (payloads / "word_count" / "scripts").mkdir(parents=True)
    (payloads / "word_count" / "scripts" / "run.sh").write_text("echo from script\n")
    (payloads / "data.txt").write_text("data\n")
    return payloads


async def test_uploads_file_and_directory_with_workdir_mapping(tmp_path: Path) -> None:
    payloads = _payloads(tmp_path)
    uploads = [
        Upload("word_count", "word_count"),
        Upload("data.txt", "inputs/copy.txt"),
        Upload(str(payloads / "data.txt"), "abs.txt"),
    ]
    config = {
        "command": [
            "bash",
            "-c",
            "pwd; bash scripts/run.sh; cat ../inputs/copy.txt ../abs.txt; echo $MIRROR_NEURON_WORKDIR",
        ],
        "workdir": "/sandbox/job/word_count",
    }
    outcome = await run_attempt(_request(tmp_path, config, uploads=uploads))
    assert outcome.ok, outcome.error
    workdir = outcome.run_result["remote_dir"]
    assert os.path.basename(workdir) == "word_count"
    assert os.path.basename(os.path.dirname(workdir)).startswith("mirror_neuron_host_local_")
    assert outcome.run_result["stdout"] == f"{workdir}\nfrom script\ndata\ndata\n{workdir}\n"
    assert _staging_left(tmp_path) == []


async def test_relative_workdir_and_custom_sandbox_path(tmp_path: Path) -> None:
    _payloads(tmp_path)
    uploads = [Upload("word_count", "wc")]
    relative = await run_attempt(
        _request(tmp_path, {"command": "pwd", "workdir": "wc/scripts"}, uploads=uploads)
    )
    assert relative.run_result["stdout"].rstrip().endswith("/wc/scripts")
    custom = {"command": "pwd", "workdir": "/box/wc", "sandbox_upload_path": "/box"}
    mapped = await run_attempt(_request(tmp_path, custom, uploads=uploads))
    assert mapped.run_result["stdout"].rstrip().endswith("/wc")
    absolute = await run_attempt(_request(tmp_path, {"command": "pwd", "workdir": str(tmp_path)}))
    assert absolute.run_result["stdout"] == f"{tmp_path}\n"


async def test_missing_workdir(tmp_path: Path) -> None:
    outcome = await run_attempt(_request(tmp_path, {"command": "echo x", "workdir": "/sandbox/job/nope"}))
    assert not outcome.ok and outcome.transient is False
    assert outcome.error == f"workdir does not exist: {outcome.run_result['remote_dir']}"
    assert outcome.run_result["remote_dir"].endswith("/nope")
    assert outcome.exit_code is None


async def test_missing_upload_source(tmp_path: Path) -> None:
    payloads = _payloads(tmp_path)
    outcome = await run_attempt(_request(tmp_path, {"command": "echo x"}, uploads=[Upload("gone", "gone")]))
    assert outcome.error == f"upload source does not exist: {os.path.realpath(payloads)}/gone"
    assert outcome.transient is False
    assert _staging_left(tmp_path) == []


@pytest.mark.parametrize("source", ["escape", "../outside", "/etc/hostname"])
async def test_upload_outside_payloads_is_refused(tmp_path: Path, source: str) -> None:
    payloads = _payloads(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    (payloads / "escape").symlink_to(outside)
    outcome = await run_attempt(_request(tmp_path, {"command": "ls -R"}, uploads=[Upload(source, "x")]))
    assert outcome.error == f"upload source {source} for node worker must be inside payloads/"
    assert outcome.transient is False


async def test_upload_target_must_be_relative(tmp_path: Path) -> None:
    _payloads(tmp_path)
    outcome = await run_attempt(_request(tmp_path, {"command": "true"}, uploads=[Upload("data.txt", "../x")]))
    assert outcome.error == 'upload target ../x for node worker must be a relative path without ".."'


async def test_uploads_without_payloads_dir_are_refused(tmp_path: Path) -> None:
    request = _request(tmp_path, {"command": "true"}, uploads=[Upload("data.txt", "d")], payloads_dir=None)
    outcome = await run_attempt(request)
    assert outcome.error == "upload source data.txt for node worker must be inside payloads/"


async def test_temp_dir_is_created(tmp_path: Path) -> None:
    temp = tmp_path / "deep" / "temp"
    outcome = await run_attempt(_request(tmp_path, {"command": "true"}, temp_dir=str(temp)))
    assert outcome.ok and temp.is_dir() and os.listdir(temp) == []


def test_settings_are_plain_values() -> None:
    assert isinstance(executor_settings({"command": "x"}, 1), ExecutorSettings)
    assert AttemptOutcome(True, {"exit_code": 0}, None, False, "s").exit_code == 0
    assert AttemptOutcome(False, {"exit_code": None}, "e", False, "s").exit_code is None


HELPER = """
import asyncio, sys
from app.domain.executor import executor_settings
from app.runtime.executor import AttemptRequest, run_attempt

settings = executor_settings({"command": ["bash", "-c", "echo $$ > " + sys.argv[1] + "; exec sleep 30"]}, 60)
request = AttemptRequest("j", "a", "executor", "generic", settings, [], {}, {}, {}, None, "n", sys.argv[2],
                         1024, {"PATH": "/usr/bin:/bin"})
if sys.argv[3] == "uvloop":
    import uvloop
    uvloop.run(run_attempt(request))
else:
    asyncio.run(run_attempt(request))
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])  # serve and worker run on uvloop
async def test_command_dies_with_a_killed_node(tmp_path: Path, loop: str) -> None:
    pid_file = tmp_path / "command.pid"
    (tmp_path / "temp").mkdir()
    node = await asyncio.create_subprocess_exec(
        PYTHON, "-c", HELPER, str(pid_file), str(tmp_path / "temp"), loop, cwd=str(Path(__file__).parents[2])
    )
    command = int(await _wait_for_file(pid_file, timeout=10))
    assert _alive(command)
    node.kill()
    await node.wait()
    assert await _settle_dead(command, timeout=3)
