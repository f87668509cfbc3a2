"""Module agents (SPEC §7.7): trusted Python classes loaded from a bundle's payloads."""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
from pathlib import Path
from typing import Any

from app.domain.module_step import ModuleAgentError, checked_state

__all__ = ["ModuleAgentError", "call_handle", "load_module_agent", "restore", "snapshot"]

_IMPORT_LOCK = threading.Lock()
ELIXIR_PREFIXES = ("MirrorNeuron.", "Elixir.")


def _split(name: str) -> tuple[str, str]:
    if ":" in name:
        module, _, attr = name.partition(":")
    else:
        module, _, attr = name.rpartition(".")
    return module, attr


def _search_root(config: dict[str, Any], payloads_path: str | None) -> str | None:
    source = config.get("module_source")
    if source is None:
        return payloads_path
    if payloads_path is None:
        raise ModuleAgentError("module_source requires payloads path in runtime context")
    path = Path(payloads_path) / str(source)
    if not path.exists():
        raise ModuleAgentError(f"module source does not exist: {path}")
    return str(path if path.is_dir() else path.parent)


def load_module_agent(config: dict[str, Any], payloads_path: str | None) -> Any:
    """Import and instantiate the configured class; raise ModuleAgentError with the spec's message."""
    name = config.get("module")
    if not isinstance(name, str) or not name:
        raise ModuleAgentError("module agent requires config.module")
    if name.startswith(ELIXIR_PREFIXES):  # upstream's BEAM modules: checked before availability (C.2.7)
        raise ModuleAgentError(
            f"module agent {name} is an Elixir module; this runtime runs Python module agents (SPEC §7.7)"
        )
    root = _search_root(config, payloads_path)
    module_name, attr = _split(name)
    with _IMPORT_LOCK:
        if root is not None:
            sys.path.insert(0, root)
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except Exception:
            raise ModuleAgentError(f"module agent {name} is not available") from None
        finally:
            if root is not None and sys.path and sys.path[0] == root:
                sys.path.pop(0)
    if not inspect.isclass(cls) or not callable(getattr(cls, "init", None)) or not callable(getattr(cls, "handle", None)):
        raise ModuleAgentError(f'invalid module agent "{name}"')
    try:
        return cls()
    except Exception as exc:
        raise ModuleAgentError(f"module agent {name} is not available") from exc


def snapshot(instance: Any, state: Any, agent_id: str) -> Any:
    """The JSON value persisted for a module agent's state."""
    value = instance.snapshot(state) if callable(getattr(instance, "snapshot", None)) else state
    return checked_state(agent_id, value)


def restore(instance: Any, snap: Any, context: dict[str, Any]) -> Any:
    """Rebuild a module agent's state from its snapshot."""
    if callable(getattr(instance, "restore", None)):
        return instance.restore(snap, context)
    return snap


async def call_handle(instance: Any, state: Any, message: dict[str, Any], context: dict[str, Any]) -> tuple[Any, list[Any]]:
    """Call `handle`, awaiting it when it is async."""
    result = instance.handle(state, message, context)
    if inspect.isawaitable(result):
        result = await result
    new_state, actions = result
    return new_state, list(actions or [])
