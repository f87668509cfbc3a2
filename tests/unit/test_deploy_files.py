"""docker-compose.yml, Dockerfile and .dockerignore read as an operator's tools would read them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STACK = {"postgres", "migrate", "api", "worker"}
NODES = ("migrate", "api", "worker")
REFERENCE = re.compile(r"^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$")


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the `- NAME=value` form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _depends(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec.get("condition", "") for name, spec in (service.get("depends_on") or {}).items()}


def test_the_default_stack_is_postgres_migrate_api_and_scalable_workers() -> None:
    services = _compose()["services"]
    assert set(services) >= DEFAULT_STACK
    # Anything else (an observability stack, say) must be opt-in, behind a profile.
    assert all(services[name].get("profiles") for name in set(services) - DEFAULT_STACK)


def test_postgres_keeps_its_data_in_a_named_volume_and_reports_health() -> None:
    compose = _compose()
    postgres = compose["services"]["postgres"]
    mounts = [m.split(":") for m in postgres["volumes"]]
    data = [source for source, target, *_ in mounts if target == "/var/lib/postgresql/data"]
    assert data and data[0] in compose["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "ports" not in postgres  # reachable from the nodes only


def test_migrations_run_once_and_every_node_waits_for_them() -> None:
    services = _compose()["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate.get("restart") == "no"
    assert _depends(migrate) == {"postgres": "service_healthy"}
    for name in ("api", "worker"):
        assert _depends(services[name]) == {"postgres": "service_healthy", "migrate": "service_completed_successfully"}
        assert _env(services[name])["MIRROR_NEURON_AUTO_MIGRATE"] == "0", name


def test_the_token_comes_from_the_environment_and_nothing_secret_is_written_in_the_file() -> None:
    services = _compose()["services"]
    assert _env(services["api"])["MIRROR_NEURON_API_TOKEN"] == "${MIRROR_NEURON_API_TOKEN:?set MIRROR_NEURON_API_TOKEN}"
    for name, service in services.items():
        for key, value in _env(service).items():
            if "TOKEN" in key or "PASSWORD" in key:
                assert REFERENCE.match(value), f"{name}: {key} is written in the file"
    assert "change-me" not in (ROOT / "docker-compose.yml").read_text()


def test_workers_scale_no_fixed_name_no_published_port() -> None:
    worker = _compose()["services"]["worker"]
    assert worker["command"] == ["worker"]
    assert "MIRROR_NEURON_NODE_NAME" not in _env(worker)
    assert "container_name" not in worker and "hostname" not in worker and "ports" not in worker
    assert worker.get("deploy", {}).get("replicas", 1) >= 1


def test_the_api_is_published_on_loopback_only() -> None:
    api = _compose()["services"]["api"]
    assert api["command"] == ["serve"]
    assert api["ports"], "the api publishes its port"
    for port in api["ports"]:
        if isinstance(port, dict):
            assert port.get("host_ip") == "127.0.0.1", port
        else:
            assert str(port).startswith("127.0.0.1:"), port
    assert REFERENCE.match(_env(api)["MIRROR_NEURON_RUNTIME_ENABLED"])  # runtime on or off by a variable


def test_every_long_running_service_has_a_healthcheck() -> None:
    services = _compose()["services"]
    for name in ("postgres", "api", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert "app.healthcheck" in " ".join(services["api"]["healthcheck"]["test"])


def test_api_and_workers_share_the_bundles_volume_at_their_bundles_dir() -> None:
    compose = _compose()
    for name in ("api", "worker"):
        service = compose["services"][name]
        bundles_dir = _env(service)["MIRROR_NEURON_BUNDLES_DIR"]
        mounts = [m.split(":") for m in service["volumes"]]
        assert ["bundles", bundles_dir] in [m[:2] for m in mounts], name
    assert "bundles" in compose["volumes"]


def test_nodes_reach_postgres_with_a_url_the_service_accepts() -> None:
    from app.store.database_url import async_url

    for name in NODES:
        url = _env(_compose()["services"][name])["MIRROR_NEURON_DATABASE_URL"]
        assert async_url(url.replace("${POSTGRES_PASSWORD:-mirror_neuron}", "pw")).startswith("postgresql+asyncpg://")


def test_the_header_says_how_to_start_scale_and_stop() -> None:
    header = (ROOT / "docker-compose.yml").read_text().split("\n\n", 1)[0]
    for words in ("docker compose up", "--scale worker=", "docker compose down", "MIRROR_NEURON_API_TOKEN"):
        assert words in header, words


def test_the_dockerfile_is_multi_stage_non_root_with_init_and_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, flags=re.MULTILINE)
    assert len(stages) >= 2 and stages[0][1] == "build", stages
    runtime = text.split(re.findall(r"^FROM .*$", text, flags=re.MULTILINE)[-1], 1)[1]
    user = re.findall(r"^USER\s+(\S+)", runtime, flags=re.MULTILINE)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["tini", "--"', runtime, flags=re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*CMD", runtime, flags=re.MULTILINE)
    assert "COPY --from=build" in runtime and "pip wheel" in text


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies() -> None:
    copied = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied.update(part.rstrip("/") for part in line.split()[1:-1] if not part.startswith("--"))
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"  # everything is left out unless let back in below
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert copied == allowed


def test_postgres_has_connections_for_the_api_and_fifteen_workers() -> None:
    """README "Sizing the Postgres pool": pool + half again in bursts + one LISTEN per node."""
    services = _compose()["services"]
    command = " ".join(services["postgres"]["command"])
    setting = re.search(r"max_connections=(\d+)", command)
    assert setting, command
    max_connections = int(setting.group(1))

    def most(name: str) -> int:
        pool = int(_env(services[name]).get("MIRROR_NEURON_DB_POOL_SIZE", "20"))
        return pool + pool // 2 + 1

    superuser_reserved = 3  # PostgreSQL's default, kept for administration
    assert most("api") + 15 * most("worker") + 1 <= max_connections - superuser_reserved
