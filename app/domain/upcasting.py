"""Event schema evolution: a `schema_version` per event type and upcasters applied on read.

Stored events are never rewritten (they are hashed). When the shape of an event type changes,
the new code registers an `Upcaster` that turns the older payload into the current one, and
every fold — the server's projection, the runtime's fold and the auditor's replay — applies
the registry before it looks at a payload, so old histories stay replayable.

Upcasters recognise the old shape from the payload itself (`applies`), because the API serves
payloads as stored and the `schema_version` column is internal (SPEC Appendix B.9): an auditor
holding only HTTP access must upcast exactly like the server does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from app.domain.events import Event


@dataclass(frozen=True)
class Upcaster:
    """Upgrades one event type's payload to `to_version` when `applies(payload)`."""

    type: str
    to_version: int
    applies: Callable[[dict[str, Any]], bool]
    upgrade: Callable[[dict[str, Any]], dict[str, Any]]


class UpcasterRegistry:
    """The upcasters of every event type, applied oldest version first."""

    def __init__(self, upcasters: Iterable[Upcaster] = ()) -> None:
        self._chains: dict[str, list[Upcaster]] = {}
        for upcaster in sorted(upcasters, key=lambda u: (u.type, u.to_version)):
            self._chains.setdefault(upcaster.type, []).append(upcaster)

    def current_version(self, type_: str) -> int:
        """The schema version new events of this type are written with."""
        chain = self._chains.get(type_)
        return chain[-1].to_version if chain else 1

    def upcast(self, event: Event) -> Event:
        """The event with its payload in the current shape (the same object when nothing applies)."""
        chain = self._chains.get(event.type)
        if not chain:
            return event
        payload = event.payload
        for upcaster in chain:
            if upcaster.applies(payload):
                payload = upcaster.upgrade(payload)
        return event if payload is event.payload else replace(event, payload=payload, payload_json=None)


# No event type has changed shape yet: every type is at schema version 1.
REGISTRY = UpcasterRegistry()


def current_registry() -> UpcasterRegistry:
    """The registry in force (looked up at call time so that a test can install another)."""
    return REGISTRY
