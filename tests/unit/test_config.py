"""Settings read from the environment (SPEC §12 and our additions)."""

from __future__ import annotations

import pytest

from app.config import ConfigError, Settings


def test_the_pool_size_defaults_to_20_and_is_read_from_the_environment() -> None:
    assert Settings.from_env({}).db_pool_size == 20
    assert Settings.from_env({"MIRROR_NEURON_DB_POOL_SIZE": " 5 "}).db_pool_size == 5


@pytest.mark.parametrize("raw", ["0", "-1", "ten", "2.5", ""])
def test_a_bad_pool_size_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="^MIRROR_NEURON_DB_POOL_SIZE must be an integer >= 1, got "):
        Settings.from_env({"MIRROR_NEURON_DB_POOL_SIZE": raw})


def test_api_processes_and_http_server_default_to_one_uvicorn_process() -> None:
    settings = Settings.from_env({})
    assert (settings.api_processes, settings.http_server) == (1, "uvicorn")
    settings = Settings.from_env({"MIRROR_NEURON_API_PROCESSES": "4", "MIRROR_NEURON_HTTP_SERVER": " Granian "})
    assert (settings.api_processes, settings.http_server) == (4, "granian")


@pytest.mark.parametrize("raw", ["0", "-2", "two", ""])
def test_a_bad_number_of_api_processes_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="^MIRROR_NEURON_API_PROCESSES must be an integer >= 1, got "):
        Settings.from_env({"MIRROR_NEURON_API_PROCESSES": raw})


@pytest.mark.parametrize("raw", ["hypercorn", "", "uvicorn,granian"])
def test_an_unknown_http_server_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="^MIRROR_NEURON_HTTP_SERVER must be uvicorn or granian, got "):
        Settings.from_env({"MIRROR_NEURON_HTTP_SERVER": raw})


def test_the_bundle_cache_cap_defaults_to_one_gibibyte_and_is_read_from_the_environment() -> None:
    assert Settings.from_env({}).bundle_cache_max_bytes == 1 << 30
    assert Settings.from_env({"MIRROR_NEURON_BUNDLE_CACHE_MAX_BYTES": "0"}).bundle_cache_max_bytes == 0
    with pytest.raises(ConfigError, match="MIRROR_NEURON_BUNDLE_CACHE_MAX_BYTES"):
        Settings.from_env({"MIRROR_NEURON_BUNDLE_CACHE_MAX_BYTES": "1 GiB"})
