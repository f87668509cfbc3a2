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
