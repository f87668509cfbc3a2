"""What every job runner of a node shares (`NodeContext`), and the ids and paths its steps use."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from app.bundles.cache import local_bundle_dir
from app.config import Settings
from app.domain.messages import message_id_from_bytes
from app.domain.runtime_state import JobRuntime
from app.runtime.bundle_cache import BundleCache
from app.runtime.pools import ExecutorPools
from app.service import Service


@dataclass
class NodeContext:
    """What every runner of a node shares."""

    service: Service
    settings: Settings
    node_name: str
    incarnation: str
    pools: ExecutorPools
    base_env: Mapping[str, str]
    clock: Callable[[], int]
    bundle_cache: BundleCache | None = None


def new_message_id() -> str:
    """A fresh 14-character message id (SPEC §6.1)."""
    return message_id_from_bytes(secrets.token_bytes(10))


def payloads_path(job: JobRuntime, temp_dir: Path) -> str | None:
    """The bundle's payloads directory on this node (an upload's is in the cache), else None."""
    return None if job.bundle is None else os.path.join(local_bundle_dir(job.bundle, temp_dir), "payloads")
