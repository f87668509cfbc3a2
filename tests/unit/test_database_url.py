"""MIRROR_NEURON_DATABASE_URL forms, libpq parameters, password redaction and the log level (SPEC C.3.3-C.3.4, C.5.12)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.config import ConfigError, Settings
from app.store.database_url import DatabaseUrlError, async_url, failure, redact, shown

VAR = "MIRROR_NEURON_DATABASE_URL"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://mn:pw@db.example:5433/jobs", "postgresql+asyncpg://mn:pw@db.example:5433/jobs"),
        ("postgres://mn@db.example/jobs", "postgresql+asyncpg://mn@db.example/jobs"),
        ("postgresql+asyncpg://mn@db.example/jobs", "postgresql+asyncpg://mn@db.example/jobs"),
        ("sqlite:///relative.db", "sqlite+aiosqlite:///relative.db"),
        ("sqlite:////var/lib/mn/abs.db", "sqlite+aiosqlite:////var/lib/mn/abs.db"),
        ("sqlite+aiosqlite:///./mirror_neuron.db", "sqlite+aiosqlite:///./mirror_neuron.db"),
        ("  postgres://mn@h/db  ", "postgresql+asyncpg://mn@h/db"),
    ],
)
def test_accepted_forms_become_the_async_driver_url(given: str, expected: str) -> None:
    assert async_url(given) == expected
    assert Settings.from_env({VAR: given}).database_url == expected


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"])
def test_sslmode_becomes_asyncpg_ssl_with_the_same_mode(mode: str) -> None:
    url = make_url(async_url(f"postgres://mn:pw@h/db?sslmode={mode}&target_session_attrs=read-write"))
    assert url.drivername == "postgresql+asyncpg"
    assert dict(url.query) == {"ssl": mode, "target_session_attrs": "read-write"}
    assert url.password == "pw"


def test_a_password_with_url_escapes_survives_the_translation() -> None:
    url = make_url(async_url("postgresql://mn:p%40ss%2Fw0rd@h/db?sslmode=require"))
    assert url.password == "p@ss/w0rd" and url.username == "mn" and url.database == "db"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("mysql://mn:hunter2@h/db", "MIRROR_NEURON_DATABASE_URL must be a postgresql://, postgres:// or sqlite:/// URL, not mysql://"),
        ("postgresql+psycopg2://mn:hunter2@h/db", "not postgresql+psycopg2://"),
        ("not a url", "MIRROR_NEURON_DATABASE_URL must be a postgresql://, postgres:// or sqlite:/// URL"),
        ("postgres://mn:hunter2@h/db?sslrootcert=/ca.pem", "'sslrootcert' is not accepted by asyncpg: set the PGSSLROOTCERT"),
        ("postgres://mn:hunter2@h/db?connect_timeout=5", "'connect_timeout'"),
        ("postgres://mn:hunter2@h/db?keepalives=1", "'keepalives' is a libpq parameter asyncpg does not support"),
        ("postgres://mn:hunter2@h/db?sslmode=sometimes", "sslmode must be one of disable, allow, prefer, require"),
        ("postgres://mn:hunter2@h/db?sslmode=require&ssl=require", "either 'sslmode' or 'ssl'"),
    ],
)
def test_unusable_urls_refuse_to_start_naming_the_variable_never_the_password(given: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({VAR: given})
    assert str(refused.value).startswith(VAR)
    assert message in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_shown_and_redact_hide_the_password_in_every_form_it_may_take() -> None:
    url = "postgresql+asyncpg://mn:p%40ss@h/db"
    assert shown(url) == "postgresql+asyncpg://mn:***@h/db"
    text = "failed: p@ss / p%40ss / postgres://other:elsewhere@x/y"
    assert redact(text, url) == "failed: *** / *** / postgres://other:***@x/y"
    assert redact("no secret here", "sqlite+aiosqlite:///x.db") == "no secret here"


def test_failure_names_the_innermost_cause_with_its_message() -> None:
    driver = asyncpg.InvalidPasswordError('password authentication failed for user "mn" (tried s3cret)')
    wrapped = DBAPIError("SELECT 1", {}, driver)
    line = failure(wrapped, "postgresql+asyncpg://mn:s3cret@h/db")
    assert line == 'InvalidPasswordError: password authentication failed for user "mn" (tried ***)'


@pytest.mark.parametrize("level", ["debug", "INFO", " Warning ", "ERROR", "critical"])
def test_log_levels_are_read_in_any_case(level: str) -> None:
    assert Settings.from_env({"MIRROR_NEURON_LOG_LEVEL": level}).log_level == level.strip().upper()


@pytest.mark.parametrize("level", ["verbose", "", "10", "TRACE"])
def test_an_invalid_log_level_refuses_to_start_naming_the_variable(level: str) -> None:
    with pytest.raises(ConfigError, match="^MIRROR_NEURON_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"):
        Settings.from_env({"MIRROR_NEURON_LOG_LEVEL": level})


def test_database_url_errors_are_value_errors_for_callers_outside_settings() -> None:
    with pytest.raises(DatabaseUrlError):
        async_url("oracle://x")
