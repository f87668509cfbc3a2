"""Deployable anywhere: the wheel installed outside the repository migrates and serves; start failures
name their cause without the password; library chatter stays out of the log.

The wheel is built from a copy of the repository's files, installed with its dependencies into a fresh
virtual environment (no access to the checkout or the dev environment), and run from a directory that
is not the repository, on a fresh SQLite file and a fresh Postgres database.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.store.migrate import head_revision
from tests.conftest import create_pg_database, drop_pg_database
from tests.runtime.processes import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "*.db*"
)


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that points at the checkout, the dev venv or our settings."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("MIRROR_NEURON_", "PYTHON")) and k not in ("VIRTUAL_ENV", "PYTEST_CURRENT_TEST")
    }
    return {**env, "PYTHONDONTWRITEBYTECODE": "1", **extra}


def _wheelhouse() -> Path:
    """Wheels downloaded by earlier runs, next to the pip cache (the session's HOME is empty: tests/conftest.py).

    pip caches no downloaded wheel it did not build, so without this every run would fetch the
    dependencies again. Installing from it with --no-index is still a full resolution of the wheel's
    declared requirements; whatever it lacks is downloaded into it first.
    """
    cache = os.environ.get("PIP_CACHE_DIR") or str(Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "pip")
    path = Path(cache).parent / "mirror-neuron-test-wheelhouse"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pip(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args], cwd=cwd, env=_clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
        capture_output=True, text=True, timeout=900,
    )


def _offline_or_fill(wheelhouse: Path, cwd: Path, args: list[str], needs: list[str]) -> None:
    """Run a pip command from the wheelhouse alone; if it lacks something, download `needs` into it and retry."""
    offline = ["--no-index", "--find-links", str(wheelhouse)]
    done = _pip(*args, *offline, cwd=cwd)
    if done.returncode != 0:
        fetched = _pip("download", "--quiet", "--dest", str(wheelhouse), *needs, cwd=cwd)
        assert fetched.returncode == 0, fetched.stdout[-3000:] + fetched.stderr[-3000:]
        for ours in wheelhouse.glob("mirror_neuron-*"):
            ours.unlink()
        done = _pip(*args, *offline, cwd=cwd)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a fresh venv holding the built wheel and its dependencies."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    build_requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    wheelhouse = _wheelhouse()
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    with open(wheelhouse / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent runs share the wheelhouse
        _offline_or_fill(wheelhouse, work, ["wheel", "--no-deps", "--wheel-dir", str(work / "dist"), str(source)], build_requires)
        (wheel,) = (work / "dist").glob("mirror_neuron-*.whl")
        _offline_or_fill(wheelhouse, work, ["--python", str(venv / "bin" / "python"), "install", "--quiet", str(wheel)], [str(wheel)])
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"app/_alembic/alembic.ini", "app/_alembic/migrations/env.py", "app/_alembic/migrations/script.py.mako"} <= names
    assert {f"app/_alembic/migrations/versions/{p.name}" for p in (ROOT / "migrations" / "versions").glob("*.py")} <= names
    # Every file the package reads at run time ships, the console's static files included.
    data = {str(p.relative_to(ROOT)) for p in (ROOT / "app").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert data <= names, sorted(data - names)
    shutil.rmtree(source)
    return venv / "bin"


def _run(bin_dir: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=_clean_env(**env), capture_output=True, text=True, timeout=180
    )


def test_the_installed_wheel_runs_from_anywhere_without_the_checkout(installed: Path, tmp_path: Path) -> None:
    version = _run(installed, tmp_path, "mirror-neuron", "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"mirror-neuron {VERSION}", version
    where = _run(installed, tmp_path, "python", "-c", "import app, app.store.migrate as m; print(app.__file__); print(m.alembic_ini())")
    module, ini = (Path(line) for line in where.stdout.splitlines())
    venv = installed.parent
    assert module.is_relative_to(venv) and ini.is_relative_to(venv), where.stdout
    assert not module.is_relative_to(ROOT) and ini.name == "alembic.ini" and ini.is_file()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_the_installed_wheel_migrates_a_fresh_database_and_serves_a_job(
    installed: Path, tmp_path: Path, backend: str
) -> None:
    pg_name = None
    if backend == "sqlite":
        url, db_file = "sqlite:///fresh.db", tmp_path / "fresh.db"  # relative: the working directory's file
    else:
        pg_name, async_url = await create_pg_database("mn_wheel")
        url, db_file = async_url.replace("postgresql+asyncpg://", "postgresql://", 1), None
    try:
        migrated = _run(installed, tmp_path, "mirror-neuron", "migrate", MIRROR_NEURON_DATABASE_URL=url)
        assert migrated.returncode == 0, migrated.stderr
        assert migrated.stdout.strip() == f"database at revision {head_revision()}"
        assert db_file is None or db_file.is_file()
        _serve_one_job(installed, tmp_path, url)
    finally:
        if pg_name is not None:
            await drop_pg_database(pg_name)


def _serve_one_job(bin_dir: Path, cwd: Path, url: str) -> None:
    port = free_port()
    env = _clean_env(
        MIRROR_NEURON_DATABASE_URL=url,
        MIRROR_NEURON_AUTO_MIGRATE="0",  # ready only because `migrate` did its work
        MIRROR_NEURON_API_PORT=str(port),
        MIRROR_NEURON_TEMP_DIR=str(cwd / "staging"),
        MIRROR_NEURON_POLL_INTERVAL_MS="100",
    )
    shutil.copy(ROOT / "examples" / "manifests" / "research_flow.json", cwd / "job.json")
    log_path = cwd / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [str(bin_dir / "mirror-neuron"), "serve"], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: server.poll() is not None or _ready(base), 60, "the installed server to be ready")
        assert server.poll() is None, log_path.read_text()
        job = subprocess.run(
            [str(bin_dir / "mirror-neuron"), "submit", "job.json", "--wait", "--timeout", "120", "--url", base],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
        )
        assert job.returncode == 0, job.stdout + job.stderr + log_path.read_text()
        assert job.stderr.splitlines()[-1].endswith(": completed"), job.stderr
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, log_path.read_text()


def _ready(base: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(base + "/api/v1/health/ready", timeout=5) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.HTTPError):
        return False


# ------------------------------------------------------------------ failures name their cause


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="module")
def password_postgres() -> Iterator[tuple[int, str]]:
    """A private PostgreSQL cluster that checks passwords (the shared one trusts everyone): (port, password)."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no initdb on this machine: a cluster that checks passwords cannot be started")
    home = Path(tempfile.mkdtemp(prefix="mn-pgpass-"))  # not under pytest's 0700 tmp root: postgres must reach it
    password = "Corr3ct-Horse-Battery"
    (home / "pw").write_text(password + "\n")
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
        shutil.chown(home / "pw", "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = home / "data"
    subprocess.run(
        [*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
         f"--pwfile={home / 'pw'}", "--no-sync", "-E", "UTF8"],
        check=True, capture_output=True, timeout=120,
    )
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(home / "log"), "-w", "start"],
        check=True, capture_output=True, timeout=120,
    )
    try:
        yield port, password
    finally:
        subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)


def _app(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def test_a_wrong_password_is_named_as_the_cause_and_never_shown(password_postgres: tuple[int, str], tmp_path: Path) -> None:
    port, password = password_postgres
    wrong = "Wr0ng-Pa55word-On-Purpose"
    bad_url = f"postgres://postgres:{wrong}@127.0.0.1:{port}/postgres?sslmode=disable"
    cause = 'InvalidPasswordError: password authentication failed for user "postgres"'

    migrate = _app(tmp_path, "migrate", MIRROR_NEURON_DATABASE_URL=bad_url)
    assert migrate.returncode == 1
    assert "migration of postgresql+asyncpg://postgres:***@127.0.0.1" in migrate.stderr and cause in migrate.stderr
    assert wrong not in migrate.stdout + migrate.stderr and "Traceback" not in migrate.stderr

    serve_env = {"MIRROR_NEURON_DATABASE_URL": bad_url, "MIRROR_NEURON_API_PORT": str(free_port())}
    serve = _app(tmp_path, "serve", **serve_env)  # AUTO_MIGRATE=1: the migration fails, the process exits
    assert serve.returncode == 1 and cause in serve.stderr, serve.stderr
    assert wrong not in serve.stdout + serve.stderr

    log_path = tmp_path / "start.log"
    with open(log_path, "wb") as log:  # AUTO_MIGRATE=0: it serves, and says why the node cannot start
        server = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **serve_env, "MIRROR_NEURON_AUTO_MIGRATE": "0"},
        )
    try:
        wait_for(lambda: "node start failed" in log_path.read_text() or server.poll() is not None, 60, "the start failure")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    text = log_path.read_text()
    assert f"node start failed ({cause}); serving and retrying" in text, text
    assert wrong not in text

    right = _app(tmp_path, "migrate", MIRROR_NEURON_DATABASE_URL=bad_url.replace(wrong, password))
    assert right.returncode == 0, right.stderr  # the cluster is up: only the password was wrong


def test_an_invalid_log_level_refuses_to_start_naming_the_variable(tmp_path: Path) -> None:
    for command in ("serve", "worker", "migrate"):
        done = _app(tmp_path, command, MIRROR_NEURON_LOG_LEVEL="loud", MIRROR_NEURON_DATABASE_URL=f"sqlite:///{tmp_path}/x.db")
        assert done.returncode == 2, (command, done.stderr)
        assert "MIRROR_NEURON_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'loud'" in done.stderr
    assert not (tmp_path / "x.db").exists()


async def test_postgres_url_forms_migrate_and_library_chatter_stays_out_of_a_debug_log(tmp_path: Path) -> None:
    name, url = await create_pg_database("mn_urlform")
    try:
        libpq_style = url.replace("postgresql+asyncpg://", "postgres://", 1) + "?sslmode=disable"
        # As in the image: listening on 0.0.0.0 by default, and no token, which only `serve` needs.
        done = _app(tmp_path, "migrate", MIRROR_NEURON_DATABASE_URL=libpq_style, MIRROR_NEURON_LOG_LEVEL="debug",
                    MIRROR_NEURON_API_HOST="0.0.0.0")
        assert done.returncode == 0, done.stderr
        assert "Running upgrade" in done.stderr  # alembic's own account of the migration stays
        assert "alembic.runtime.plugins" not in done.stderr and "setup plugin" not in done.stderr
    finally:
        await drop_pg_database(name)
    sqlite = _app(tmp_path, "migrate", MIRROR_NEURON_DATABASE_URL="sqlite:///debug.db", MIRROR_NEURON_LOG_LEVEL="DEBUG")
    assert sqlite.returncode == 0 and (tmp_path / "debug.db").is_file(), sqlite.stderr
    assert "Running upgrade" in sqlite.stderr
    assert " aiosqlite:" not in sqlite.stderr and "setup plugin" not in sqlite.stderr, sqlite.stderr[-2000:]


# ------------------------------------------------------------------ the image's HEALTHCHECK


def test_the_healthcheck_asks_the_node_in_its_container(database_url: str, tmp_path: Path) -> None:
    from app.healthcheck import main, probe_url

    assert probe_url({"MIRROR_NEURON_API_HOST": "0.0.0.0", "MIRROR_NEURON_API_PORT": "4100"}) == (
        "http://127.0.0.1:4100/api/v1/health/ready"
    )
    assert probe_url({"MIRROR_NEURON_METRICS_PORT": "9400", "MIRROR_NEURON_METRICS_HOST": "::"}) == "http://[::1]:9400/readyz"
    assert probe_url({"MIRROR_NEURON_API_ENABLED": "0"}) is None
    assert main({"MIRROR_NEURON_API_ENABLED": "0"}) == 0  # a worker without a listener: nothing to ask
    port = free_port()
    env = {"MIRROR_NEURON_API_PORT": str(port), "MIRROR_NEURON_API_TOKEN": "health-token"}
    log_path = tmp_path / "health.log"
    with open(log_path, "wb") as log:
        node = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **env, "MIRROR_NEURON_DATABASE_URL": database_url, "MIRROR_NEURON_TEMP_DIR": str(tmp_path)},
        )
    try:
        wait_for(lambda: node.poll() is not None or main(env) == 0, 60, "the healthcheck to pass")
        assert node.poll() is None, log_path.read_text()
        assert main({**env, "MIRROR_NEURON_API_TOKEN": "wrong"}) == 1  # 401 is not ready
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=60) == 0, log_path.read_text()
    assert main(env) == 1  # nobody listens any more
