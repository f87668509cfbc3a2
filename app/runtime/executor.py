"""Run one executor attempt as a real subprocess in a fresh staging directory (SPEC §7.5.3–§7.5.6)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from app.domain.canonical import format_ms
from app.domain.executor import (
    BODY_META_FILE,
    ExecutorSettings,
    ProcessContext,
    RunResult,
    context_document,
    effective_encoding,
    exit_error,
    is_transient,
    placeholder_values,
    process_argv,
    process_environment,
    resolve_workdir,
    run_result_object,
    sandbox_name,
    staged_files,
    timeout_error,
)
from app.domain.executor_step import AttemptOutcome
from app.domain.manifest import Upload
from app.domain.messages import encode_body

KILL_GRACE_SECONDS = 2.0
DRAIN_GRACE_SECONDS = 2.0
READ_CHUNK = 64 * 1024
GROUP_POLL_SECONDS = 0.05
PR_SET_PDEATHSIG = 1
STAGING_PREFIX = "mirror_neuron_host_local_"

T = TypeVar("T")


@dataclass(frozen=True)
class AttemptRequest:
    """Everything one attempt needs; `body` is the message body, or `{}` when it is null."""

    job_id: str
    agent_id: str
    agent_type: str
    template: str
    settings: ExecutorSettings
    uploads: Sequence[Upload]
    message: Mapping[str, Any]
    body: Any
    agent_state: Any
    payloads_dir: str | None
    node_name: str
    temp_dir: str
    output_cap_bytes: int
    base_env: Mapping[str, str] = field(default_factory=dict)


class AttemptError(Exception):
    """A non-transient failure before the command ran; its str is the error sentence."""


@dataclass
class _Capture:
    """Keeps the first `cap` bytes of a stream and counts the rest as truncated."""

    cap: int
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        """Read the stream to its end in constant memory."""
        if stream is None:
            return
        while chunk := await stream.read(READ_CHUNK):
            room = self.cap - len(self.data)
            if room > 0:
                self.data += chunk[:room]
            if len(chunk) > room:
                self.truncated = True

    def text(self) -> str:
        """Return the captured bytes as UTF-8 with replacement, U+0000 replaced by U+FFFD."""
        return bytes(self.data).decode("utf-8", errors="replace").replace("\x00", "\ufffd")


@dataclass(frozen=True)
class _ProcessResult:
    """What the process did: exit status, captured output, timeout, start failure."""

    exit_code: int | None
    stdout: _Capture
    stderr: _Capture
    timed_out: bool = False
    start_error: str | None = None


# --------------------------------------------------------------------------------------------------
# Attempt


async def run_attempt(req: AttemptRequest) -> AttemptOutcome:
    """Run one attempt; a cancelled caller gets the process group terminated and CancelledError."""
    started = time.monotonic()
    name = sandbox_name(req.settings.name_prefix, req.job_id, req.agent_id)
    if req.settings.command is None:
        return _no_command(req, name, started)
    staging = os.path.join(req.temp_dir, f"{STAGING_PREFIX}{name}_{secrets.token_hex(4)}")
    try:
        return await _attempt_in(req, name, staging, started)
    finally:
        # Cancellation may already be pending here, so the directory is removed synchronously.
        shutil.rmtree(staging, ignore_errors=True)


def _no_command(req: AttemptRequest, name: str, started: float) -> AttemptOutcome:
    """Succeed without a process, as §7.5.1 prescribes for an executor without `command`."""
    result = RunResult(
        sandbox_name=name,
        remote_dir=req.settings.workdir or req.settings.sandbox_upload_path,
        node_name=req.node_name,
        duration_ms=_elapsed_ms(started),
        exit_code=0,
        stdout=f"no command configured for executor {req.agent_id}\n",
    )
    return AttemptOutcome(True, run_result_object(result), None, False, name)


async def _attempt_in(req: AttemptRequest, name: str, staging: str, started: float) -> AttemptOutcome:
    """Prepare the staging directory, run the command, and classify the result."""
    workdir = resolve_workdir(req.settings, staging)
    try:
        ctx = await _in_thread(lambda: _prepare(req, staging, workdir))
    except AttemptError as exc:
        result = RunResult(name, workdir, req.node_name, _elapsed_ms(started))
        return AttemptOutcome(False, run_result_object(result), str(exc), False, name)
    assert req.settings.command is not None
    argv = process_argv(req.settings.command, placeholder_values(ctx))
    env = process_environment(req.base_env, ctx, req.settings)
    done = await _run_process(argv, workdir, env, req.settings.timeout_seconds, req.output_cap_bytes)
    return _outcome(req, name, workdir, done, started)


def _outcome(
    req: AttemptRequest, name: str, workdir: str, done: _ProcessResult, started: float
) -> AttemptOutcome:
    """Turn what the process did into an outcome with its error sentence and transience."""
    result = RunResult(
        sandbox_name=name,
        remote_dir=workdir,
        node_name=req.node_name,
        duration_ms=_elapsed_ms(started),
        exit_code=done.exit_code,
        stdout=done.stdout.text(),
        stderr=done.stderr.text(),
        stdout_truncated=done.stdout.truncated,
        stderr_truncated=done.stderr.truncated,
        timed_out=done.timed_out,
    )
    run_result = run_result_object(result)
    if done.start_error is not None:
        return AttemptOutcome(False, run_result, done.start_error, False, name)
    if done.timed_out:
        return AttemptOutcome(False, run_result, timeout_error(req.settings.timeout_seconds), True, name)
    if done.exit_code == 0:
        return AttemptOutcome(True, run_result, None, False, name)
    error = exit_error(done.exit_code if done.exit_code is not None else -1)
    return AttemptOutcome(False, run_result, error, is_transient({**run_result, "error": error}), name)


def _elapsed_ms(started: float) -> int:
    """Return the milliseconds since a monotonic start."""
    return int((time.monotonic() - started) * 1000)


async def _in_thread(work: Callable[[], T]) -> T:
    """Run blocking work in a thread; on cancellation wait for it to stop before re-raising."""
    task: asyncio.Future[T] = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        # The thread cannot be interrupted: let it finish so the staging directory is not
        # being written while the caller removes it.
        await asyncio.wait([task])
        raise


# --------------------------------------------------------------------------------------------------
# Staging directory (blocking; runs in a thread)


def _prepare(req: AttemptRequest, staging: str, workdir: str) -> ProcessContext:
    """Create the staging directory, copy uploads, write the five files, check the workdir."""
    os.makedirs(req.temp_dir, exist_ok=True)
    os.mkdir(staging)
    for upload in req.uploads:
        _copy_upload(upload, req, staging)
    content_type, content_encoding = effective_encoding(req.settings, req.message)
    ctx = ProcessContext(
        req.job_id,
        req.agent_id,
        req.agent_type,
        req.template,
        staging,
        workdir,
        content_type,
        content_encoding,
    )
    _write_files(req, ctx)
    if not os.path.isdir(workdir):
        raise AttemptError(f"workdir does not exist: {workdir}")
    _check_workdir_confined(req, staging, workdir)
    return ctx


def _inside(path: str, root: str) -> bool:
    """Tell whether a resolved path is `root` or below it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _check_workdir_confined(req: AttemptRequest, staging: str, workdir: str) -> None:
    """A workdir mapped into the staging directory (relative, or under the sandbox path) must resolve
    inside it: neither `..` nor an uploaded symlink may lead out. An absolute workdir outside the
    sandbox path is used as given (§7.5.3), so it is the only way to run elsewhere."""
    if workdir == req.settings.workdir:
        return
    if not _inside(os.path.realpath(workdir), os.path.realpath(staging)):
        raise AttemptError(
            f"workdir {req.settings.workdir} for node {req.agent_id} must stay inside the staging directory"
        )


def _copy_upload(upload: Upload, req: AttemptRequest, staging: str) -> None:
    """Copy one upload (file or directory) from payloads/ to `<staging>/<target>`."""
    source = _upload_source(upload.source, req.payloads_dir, req.agent_id)
    if upload.target.startswith("/") or ".." in upload.target.split("/"):
        raise AttemptError(
            f'upload target {upload.target} for node {req.agent_id} must be a relative path without ".."'
        )
    target = os.path.join(staging, upload.target)
    if os.path.isdir(source):
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
        return
    os.makedirs(os.path.dirname(target) or staging, exist_ok=True)
    shutil.copy2(source, target)


def _upload_source(source: str, payloads_dir: str | None, agent_id: str) -> str:
    """Resolve an upload source inside payloads/ (symlinks followed) and check it exists."""
    outside = AttemptError(f"upload source {source} for node {agent_id} must be inside payloads/")
    if payloads_dir is None or ".." in source.split("/"):
        raise outside
    root = os.path.realpath(payloads_dir)
    resolved = os.path.realpath(os.path.join(root, source))
    if not _inside(resolved, root):
        raise outside
    if not os.path.exists(resolved):
        raise AttemptError(f"upload source does not exist: {resolved}")
    return resolved


def _write_files(req: AttemptRequest, ctx: ProcessContext) -> None:
    """Write the five files of §7.5.4 into the staging directory."""
    body = {} if req.body is None else req.body
    try:
        body_bytes = encode_body(body, ctx.content_type, ctx.content_encoding)
    except ValueError as exc:
        raise AttemptError(str(exc)) from exc
    files = staged_files(ctx.staging_dir)
    timestamp = format_ms(time.time_ns() // 1_000_000)
    meta = {"content_type": ctx.content_type, "content_encoding": ctx.content_encoding}
    _write_json(files["input_file"], body)
    _write_json(files["message_file"], req.message)
    _write_json(os.path.join(ctx.staging_dir, BODY_META_FILE), meta)
    _write_json(files["context_file"], context_document(ctx, req.agent_state, timestamp))
    with open(files["body_file"], "wb") as handle:
        handle.write(body_bytes)


def _write_json(path: str, value: Any) -> None:
    """Write a JSON document indented by two spaces, UTF-8."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(value, indent=2, ensure_ascii=False))


# --------------------------------------------------------------------------------------------------
# Process


def _load_prctl() -> Callable[..., int] | None:
    """Return libc's prctl on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()
# util-linux's setpriv sets the parent-death signal and execs the command. Starting through it
# keeps Python code out of the child, so the child is spawned with vfork (0.1 ms of the node's
# CPU); a preexec hook forces a fork that copies the node's page tables (5 ms of CPU with the
# event loop blocked 16 ms per start, measured in a 200-executor fan-out).
_SETPRIV = shutil.which("setpriv") if _PRCTL is not None else None


def _death_signal_hook(parent_pid: int) -> Callable[[], None] | None:
    """Return the preexec hook giving the child SIGKILL when its parent dies (Appendix B.19)."""
    prctl = _PRCTL
    if prctl is None:
        return None

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return hook


class _Process(Protocol):
    """What the attempt needs of a started command (an asyncio Process has it too)."""

    @property
    def pid(self) -> int: ...

    @property
    def stdout(self) -> asyncio.StreamReader | None: ...

    @property
    def stderr(self) -> asyncio.StreamReader | None: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


@dataclass(eq=False)
class _Child:
    """A command started with subprocess.Popen, its exit watched through a pidfd on the event loop."""

    popen: subprocess.Popen[bytes]
    stdout: asyncio.StreamReader | None
    stderr: asyncio.StreamReader | None
    exited: asyncio.Future[int]
    transports: list[asyncio.BaseTransport]

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.exited.result() if self.exited.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self.exited)

    def close(self) -> None:
        """Close the output pipes (a reader given up on after the grace period leaves one open)."""
        for transport in self.transports:
            transport.close()


def _check_executable(program: str, cwd: str, env: Mapping[str, str]) -> None:
    """Raise AttemptError, as Popen would, when argv[0] names no executable file.

    The command is exec'd by setpriv, whose own exec failure would look like the command's exit
    status 127: checking first keeps "failed to start command" for a missing program.
    """
    path = os.path.join(cwd, program) if os.sep in program else program
    if shutil.which(path, path=env.get("PATH", os.defpath)) is None:
        err = errno.EACCES if os.path.isfile(path) else errno.ENOENT
        raise AttemptError(f"failed to start command: {OSError(err, os.strerror(err), program)}")


async def _pipe_reader(loop: asyncio.AbstractEventLoop, pipe: Any) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    reader = asyncio.StreamReader(limit=2 * READ_CHUNK, loop=loop)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    return reader, transport


def _watch_exit(loop: asyncio.AbstractEventLoop, popen: subprocess.Popen[bytes]) -> asyncio.Future[int]:
    """A future of the child's return code (negative: killed by that signal), reaped when its pidfd fires."""
    exited: asyncio.Future[int] = loop.create_future()
    pidfd = os.pidfd_open(popen.pid)

    def reap() -> None:
        try:
            pid, status = os.waitpid(popen.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: the status is lost
            pid, status = popen.pid, 255 << 8
        if pid == 0:
            return
        loop.remove_reader(pidfd)
        os.close(pidfd)
        popen.returncode = os.waitstatus_to_exitcode(status)
        if not exited.done():
            exited.set_result(popen.returncode)

    loop.add_reader(pidfd, reap)
    return exited


async def _start(argv: list[str], cwd: str, env: Mapping[str, str]) -> _Process:
    """Start the command in its own process group with stdin /dev/null and piped output."""
    if not argv:
        raise AttemptError("failed to start command: empty argument list")
    if not hasattr(os, "pidfd_open"):  # not Linux: asyncio's own subprocess support
        return await _start_asyncio(argv, cwd, env)
    preexec: Callable[[], None] | None = None
    if _SETPRIV is not None:
        _check_executable(argv[0], cwd, env)
        argv = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]  # setpriv's execvp searches the same PATH
    else:
        preexec = _death_signal_hook(os.getpid())
    loop = asyncio.get_running_loop()
    try:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            preexec_fn=preexec,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        raise AttemptError(f"failed to start command: {exc}") from exc
    exited = _watch_exit(loop, popen)
    try:
        stdout, out_transport = await _pipe_reader(loop, popen.stdout)
        stderr, err_transport = await _pipe_reader(loop, popen.stderr)
    except BaseException:  # cancelled before the caller could supervise it: nothing may outlive us
        _signal_group(popen.pid, signal.SIGKILL)
        raise
    return _Child(popen, stdout, stderr, exited, [out_transport, err_transport])


async def _start_asyncio(argv: list[str], cwd: str, env: Mapping[str, str]) -> _Process:
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            preexec_fn=_death_signal_hook(os.getpid()),
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        raise AttemptError(f"failed to start command: {exc}") from exc


async def _run_process(
    argv: list[str], cwd: str, env: Mapping[str, str], timeout: float, cap: int
) -> _ProcessResult:
    """Run the process to its end or timeout, capturing stdout and stderr up to `cap` each."""
    out, err = _Capture(cap), _Capture(cap)
    try:
        proc = await _start(argv, cwd, env)
    except AttemptError as exc:
        return _ProcessResult(None, out, err, start_error=str(exc))
    readers = [asyncio.ensure_future(out.drain(proc.stdout)), asyncio.ensure_future(err.drain(proc.stderr))]
    try:
        timed_out = await _supervise(proc, timeout)
        await _finish_readers(readers)
    except asyncio.CancelledError:
        await _terminate_group(proc)
        raise
    finally:
        for reader in readers:
            reader.cancel()
        if isinstance(proc, _Child):
            proc.close()
    code = None if timed_out else _exit_status(proc.returncode)
    return _ProcessResult(code, out, err, timed_out=timed_out)


async def _supervise(proc: _Process, timeout: float) -> bool:
    """Wait for the process; on timeout terminate its group. Return whether it timed out."""
    try:
        async with asyncio.timeout(timeout):
            await proc.wait()
    except TimeoutError:
        await _terminate_group(proc)
        return True
    # The command has ended: what is left of its process group must not outlive the attempt
    # (it would write into a staging directory that is about to be removed).
    _signal_group(proc.pid, signal.SIGKILL)
    return False


async def _finish_readers(readers: Sequence[asyncio.Future[None]]) -> None:
    """Wait for both output streams to end, at most DRAIN_GRACE_SECONDS."""
    await asyncio.wait(readers, timeout=DRAIN_GRACE_SECONDS)


def _exit_status(returncode: int | None) -> int | None:
    """Return the exit status, 128 + N when the process was killed by signal N."""
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 else returncode


async def _terminate_group(proc: _Process) -> None:
    """SIGTERM the process group, then SIGKILL it if anything is left after the grace period."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        await _await_group_gone(proc, KILL_GRACE_SECONDS)
    finally:
        if proc.returncode is None or _group_alive(proc.pid):
            _signal_group(proc.pid, signal.SIGKILL)
    if proc.returncode is None:
        await proc.wait()


async def _await_group_gone(proc: _Process, grace: float) -> None:
    """Return once the leader is reaped and its group is empty, or after `grace` seconds."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc.returncode is not None and not _group_alive(proc.pid):
            return
        await asyncio.sleep(GROUP_POLL_SECONDS)


def _group_alive(pgid: int) -> bool:
    """Tell whether a process group has a member that is not a zombie awaiting its reaper."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc/self"):
        return True
    # Orphaned members are reparented to init, which may reap them late; zombies count as gone.
    return any(_live_member(entry, pgid) for entry in os.listdir("/proc") if entry.isdigit())


def _live_member(pid: str, pgid: int) -> bool:
    """Tell whether /proc/<pid> is a non-zombie process of the given process group."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X")


def _signal_group(pgid: int, signum: int) -> None:
    """Send a signal to a process group, ignoring a group that no longer exists."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


AttemptRunner = Callable[[AttemptRequest], Awaitable[AttemptOutcome]]
"""The type of `run_attempt`, for callers that inject another runner in tests."""
