"""Hardening tests reuse the API client fixtures and the in-process node harness."""

from tests.api.conftest import client, make_client
from tests.runtime.conftest import harness, settings_overrides

__all__ = ["client", "harness", "make_client", "settings_overrides"]
