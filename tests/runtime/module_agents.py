"""Module agents importable from the server's path, for raw-manifest tests (SPEC §7.7)."""

from __future__ import annotations

from typing import Any


class Broken:
    def init(self, config: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        return {}

    def handle(self, state: Any, message: dict[str, Any], context: dict[str, Any]) -> Any:
        raise ValueError("boom")


class BadAction(Broken):
    def handle(self, state: Any, message: dict[str, Any], context: dict[str, Any]) -> Any:
        return state, [{"action": "explode"}]


class Reserved(Broken):
    def handle(self, state: Any, message: dict[str, Any], context: dict[str, Any]) -> Any:
        return state, [{"action": "event", "type": "job_completed", "payload": {}}]


class NotSerialisable(Broken):
    def handle(self, state: Any, message: dict[str, Any], context: dict[str, Any]) -> Any:
        return object(), []


class AsyncEcho(Broken):
    async def handle(self, state: Any, message: dict[str, Any], context: dict[str, Any]) -> Any:
        return {"echoed": message["body"]}, [{"action": "complete_job", "result": {"echo": message["body"], "node": context["node"]}}]


class NotAgent:
    def init(self, config: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        return {}


class InitFails(Broken):
    def init(self, config: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("api_key")


class EmitsASet(Broken):
    def handle(self, state: Any, message: dict[str, Any], context: dict[str, Any]) -> Any:
        return state, [{"action": "emit_to", "to": "m", "type": "x", "body": {1, 2}}]


class EmitsAHugeInteger(Broken):
    def handle(self, state: Any, message: dict[str, Any], context: dict[str, Any]) -> Any:
        return state, [{"action": "emit_to", "to": "m", "type": "x", "body": {"n": 2**53 + 1}}]


class KeepsAHugeInteger(Broken):
    def handle(self, state: Any, message: dict[str, Any], context: dict[str, Any]) -> Any:
        return {"n": -(2**64) - 1}, []


class EmitsIntegerKeys(Broken):
    def handle(self, state: Any, message: dict[str, Any], context: dict[str, Any]) -> Any:
        return state, [{"action": "emit_to", "to": "m", "type": "x", "body": {10: "a", 9: "b"}}]


class CompletesWithAnExactLargeInteger(Broken):
    def handle(self, state: Any, message: dict[str, Any], context: dict[str, Any]) -> Any:
        return state, [{"action": "complete_job", "result": {"n": 2**60, "ratio": 1.0}}]
