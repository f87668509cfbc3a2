"""Settings, read once from MIRROR_NEURON_* environment variables (SPEC §12, Appendix B.11)."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import socket
import tempfile
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./mirror_neuron.db"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """An invalid setting: the process refuses to start with this message."""


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be one of 1/true/yes/on or 0/false/no/off, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or int(text) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {raw!r}")
    return int(text)


def _seconds(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a positive number of seconds, got {raw!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ConfigError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def _database_url(env: Mapping[str, str], name: str) -> str:
    # Imported here: SQLAlchemy's URL parser costs client commands (submit, jobs) nothing this way.
    from app.store.database_url import DatabaseUrlError, async_url

    try:
        return async_url(env.get(name, DEFAULT_DATABASE_URL))
    except DatabaseUrlError as exc:
        raise ConfigError(f"{name} {exc}") from None


def _log_level(env: Mapping[str, str], name: str) -> str:
    raw = env.get(name, "INFO")
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{name} must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return level


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of exact browser origins (`scheme://host[:port]`); `*` is refused (C.5.7)."""
    origins = tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())
    for origin in origins:
        if origin == "*":
            raise ConfigError(f"{name} must list origins exactly; \"*\" is not allowed")
        parts = urllib.parse.urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or origin != f"{parts.scheme}://{parts.netloc}":
            raise ConfigError(f"{name}: {origin!r} is not an origin such as https://example.org:8443")
    return origins


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    """Every setting of SPEC §12, validated."""

    api_enabled: bool = True
    api_host: str = "127.0.0.1"
    api_port: int = 4000
    api_token: str | None = None
    api_read_token: str | None = None
    cors_origins: tuple[str, ...] = ()
    allow_insecure: bool = False
    max_body_bytes: int = 10 * 1024 * 1024
    database_url: str = DEFAULT_DATABASE_URL
    db_pool_size: int = 20
    auto_migrate: bool = True
    node_name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    runtime_enabled: bool = True
    max_active_jobs: int = 100
    poll_interval_ms: int = 250
    heartbeat_seconds: float = 3.0
    lease_ttl_seconds: float = 10.0
    bundles_dir: Path | None = None
    bundle_reload_mode: str | None = None
    bundle_reload_interval_seconds: float | None = None
    bundle_upload_max_bytes: int = 104_857_600
    bundle_cache_max_bytes: int = 1_073_741_824
    executor_max_concurrency: str | None = None
    executor_pool_capacities: str | None = None
    executor_timeout_seconds: float = 3600.0
    executor_output_cap_bytes: int = 1024 * 1024
    temp_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "mirror_neuron")
    log_level: str = "INFO"
    console_enabled: bool = True
    http_server: str = "uvicorn"
    api_processes: int = 1
    log_format: str = "text"
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the environment; raise ConfigError naming the variable."""
        e = os.environ if env is None else env
        p = "MIRROR_NEURON_"
        defaults = cls()
        mode = e.get(p + "BUNDLE_RELOAD_MODE")
        if mode is not None and mode not in ("manual", "interval"):
            raise ConfigError(f"{p}BUNDLE_RELOAD_MODE must be manual or interval, got {mode!r}")
        bundles = e.get(p + "BUNDLES_DIR")
        log_format = e.get(p + "LOG_FORMAT", "text").strip().lower()
        if log_format not in ("text", "json"):
            raise ConfigError(f"{p}LOG_FORMAT must be text or json, got {e.get(p + 'LOG_FORMAT')!r}")
        metrics_port = _int(e, p + "METRICS_PORT", 0, minimum=1) if e.get(p + "METRICS_PORT") else None
        settings = cls(
            api_enabled=_bool(e, p + "API_ENABLED", True),
            api_host=e.get(p + "API_HOST", defaults.api_host),
            api_port=_int(e, p + "API_PORT", 4000),
            api_token=e.get(p + "API_TOKEN") or None,
            api_read_token=e.get(p + "API_READ_TOKEN") or None,
            cors_origins=_origins(e, p + "CORS_ORIGINS"),
            allow_insecure=_bool(e, p + "ALLOW_INSECURE", False),
            max_body_bytes=_int(e, p + "MAX_BODY_BYTES", defaults.max_body_bytes, minimum=1),
            database_url=_database_url(e, p + "DATABASE_URL"),
            db_pool_size=_int(e, p + "DB_POOL_SIZE", defaults.db_pool_size, minimum=1),
            auto_migrate=_bool(e, p + "AUTO_MIGRATE", True),
            node_name=e.get(p + "NODE_NAME") or defaults.node_name,
            runtime_enabled=_bool(e, p + "RUNTIME_ENABLED", True),
            max_active_jobs=_int(e, p + "MAX_ACTIVE_JOBS", 100, minimum=1),
            poll_interval_ms=_int(e, p + "POLL_INTERVAL_MS", 250, minimum=1),
            heartbeat_seconds=_seconds(e, p + "HEARTBEAT_SECONDS", 3.0) or 3.0,
            lease_ttl_seconds=_seconds(e, p + "LEASE_TTL_SECONDS", 10.0) or 10.0,
            bundles_dir=Path(bundles).resolve() if bundles else None,
            bundle_reload_mode=mode,
            bundle_reload_interval_seconds=_seconds(e, p + "BUNDLE_RELOAD_INTERVAL_SECONDS", None),
            bundle_upload_max_bytes=_int(
                e, p + "BUNDLE_UPLOAD_MAX_BYTES", defaults.bundle_upload_max_bytes, minimum=1
            ),
            bundle_cache_max_bytes=_int(e, p + "BUNDLE_CACHE_MAX_BYTES", defaults.bundle_cache_max_bytes),
            executor_max_concurrency=e.get(p + "EXECUTOR_MAX_CONCURRENCY"),
            executor_pool_capacities=e.get(p + "EXECUTOR_POOL_CAPACITIES"),
            executor_timeout_seconds=_seconds(e, p + "EXECUTOR_TIMEOUT_SECONDS", 3600.0) or 3600.0,
            executor_output_cap_bytes=_int(e, p + "EXECUTOR_OUTPUT_CAP_BYTES", 1024 * 1024, minimum=1),
            temp_dir=Path(e.get(p + "TEMP_DIR") or defaults.temp_dir),
            log_level=_log_level(e, p + "LOG_LEVEL"),
            console_enabled=_bool(e, p + "CONSOLE", True),
            http_server=e.get(p + "HTTP_SERVER", "uvicorn").strip().lower(),
            api_processes=_int(e, p + "API_PROCESSES", 1, minimum=1),
            log_format=log_format,
            metrics_host=e.get(p + "METRICS_HOST") or defaults.metrics_host,
            metrics_port=metrics_port,
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse combinations the spec forbids (SPEC §1.2, §2.1, §10.2)."""
        if not self.api_enabled and not self.runtime_enabled:
            raise ConfigError("both the API and the runtime are disabled")
        if self.http_server not in ("uvicorn", "granian"):
            raise ConfigError(f"MIRROR_NEURON_HTTP_SERVER must be uvicorn or granian, got {self.http_server!r}")
        if self.http_server == "granian" and importlib.util.find_spec("granian") is None:
            raise ConfigError("MIRROR_NEURON_HTTP_SERVER=granian needs the granian package (pip install granian)")
        if self.lease_ttl_seconds < 2 * self.heartbeat_seconds:
            raise ConfigError(
                "MIRROR_NEURON_LEASE_TTL_SECONDS must be at least twice MIRROR_NEURON_HEARTBEAT_SECONDS"
            )
        if self.metrics_port is not None and (self.metrics_port > 65535 or (self.api_enabled and self.metrics_port == self.api_port)):
            raise ConfigError(
                f"MIRROR_NEURON_METRICS_PORT must be a free TCP port other than MIRROR_NEURON_API_PORT, got {self.metrics_port}"
            )
        if self.api_read_token is not None and self.api_token is None:
            raise ConfigError("MIRROR_NEURON_API_READ_TOKEN is set without MIRROR_NEURON_API_TOKEN; set both or neither")
        if self.api_read_token is not None and self.api_read_token == self.api_token:
            raise ConfigError("MIRROR_NEURON_API_READ_TOKEN must differ from MIRROR_NEURON_API_TOKEN")
        if self.api_enabled and not is_loopback(self.api_host) and not self.api_token and not self.allow_insecure:
            raise ConfigError(
                f"refusing to listen on {self.api_host} without MIRROR_NEURON_API_TOKEN; "
                "set MIRROR_NEURON_ALLOW_INSECURE=1 to override"
            )
