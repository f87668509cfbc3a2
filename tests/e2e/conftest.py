"""The server the end-to-end client tests talk to: one node process on an emptied database per module,
on SQLite and Postgres (through `database_url`).

A module says which node it wants by overriding the `node_spec` fixture (its name, its environment,
or a `NodeProcess` subclass); `server` starts it once for the module and stops it after.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from app.store.database import Database
from tests.conftest import reset
from tests.runtime.processes import ROOT, NodeProcess

EXAMPLES = ROOT / "examples"


@dataclass(frozen=True)
class NodeSpec:
    """How a module's server is started: `kind(name, database_url, workdir, **env)`."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    kind: type[NodeProcess] = NodeProcess


def serving_examples(name: str, **env: str) -> NodeSpec:
    """A node that serves the examples' bundles."""
    return NodeSpec(name, {"MIRROR_NEURON_BUNDLES_DIR": str(EXAMPLES), **env})


@pytest.fixture(scope="module")
def node_spec() -> NodeSpec:
    """The module's server; override it in a test module."""
    return serving_examples("e2e-node")


def _empty(database_url: str) -> None:
    async def empty() -> None:
        db = Database(database_url)
        try:
            await reset(db)
        finally:
            await db.dispose()

    asyncio.run(empty())


@pytest.fixture(scope="module")
def server(node_spec: NodeSpec, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node as `node_spec` says, on an emptied database, for the whole module."""
    _empty(database_url)
    workdir = tmp_path_factory.mktemp(node_spec.name)
    node = node_spec.kind(node_spec.name, database_url, workdir, **node_spec.env).start()
    try:
        yield node
    finally:
        node.stop()
