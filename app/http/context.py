"""What the controllers are given: settings, database, write path and the serving node's name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from litestar.di import NamedDependency

from app.config import Settings
from app.service import Service
from app.store.database import Database


@dataclass(frozen=True)
class Api:
    """The dependencies of every controller, provided once per application."""

    settings: Settings
    db: Database
    service: Service
    node_name: str

    def now_ms(self) -> int:
        """The current time, from the service's clock."""
        return self.service.clock()


# A controller parameter named `api` of this type receives the application's Api.
ApiDep: TypeAlias = NamedDependency[Api]
