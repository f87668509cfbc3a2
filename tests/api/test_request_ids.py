"""Request ids and HTTP metrics on the API port (SPEC C.3.3, C.5.8, C.5.11), both databases."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

import pytest

from app.config import Settings
from app.ops import metrics
from app.ops.logs import JsonFormatter
from tests.api.conftest import ClientFactory

HEADER = "X-Request-ID"


class _Lines(logging.Handler):
    """Formats each record at once (the request id lives in the request's context)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter("test-node"))
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def access_lines() -> Iterator[list[dict[str, object]]]:
    handler = _Lines()
    logger = logging.getLogger("mirror_neuron.access")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.parametrize(
    "sent",
    ["abc-123", "x" * 128, "!~" * 10, "a"],
)
async def test_a_valid_client_id_is_echoed_and_logged(
    make_client: ClientFactory, access_lines: list[dict[str, object]], sent: str
) -> None:
    client = await make_client()
    answer = await client.get("/api/v1/jobs", headers={HEADER: sent})
    assert answer.status_code == 200
    assert answer.headers[HEADER] == sent
    assert [line["request_id"] for line in access_lines if "GET /api/v1/jobs 200" in str(line["msg"])] == [sent]


@pytest.mark.parametrize("sent", ["", "x" * 129, "has space", "tab\tinside", "caf\u00e9"])
async def test_an_invalid_client_id_is_replaced_by_a_new_one(make_client: ClientFactory, sent: str) -> None:
    client = await make_client()
    answer = await client.get("/api/v1/jobs", headers={HEADER: sent.encode("utf-8")})
    assert answer.status_code == 200
    assert uuid.UUID(answer.headers[HEADER]).version == 4


async def test_every_answer_carries_an_id_401_and_404_included(make_client: ClientFactory) -> None:
    client = await make_client(Settings(api_token="secret-token"))
    unauthorized = await client.get("/api/v1/jobs")
    missing = await client.get("/api/v1/nowhere", headers={"Authorization": "Bearer secret-token"})
    health = await client.get("/api/v1/health")
    assert (unauthorized.status_code, missing.status_code, health.status_code) == (401, 404, 200)
    ids = {uuid.UUID(a.headers[HEADER]) for a in (unauthorized, missing, health)}
    assert len(ids) == 3


async def test_http_metrics_are_labelled_by_route_template(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "_on", True)
    client = await make_client()
    job_id = f"nojob-{uuid.uuid4().hex}"

    def count(route: str, status: str) -> float:
        labels = {"method": "GET", "route": route, "status": status}
        return metrics.REGISTRY.get_sample_value("mirror_neuron_http_requests_total", labels) or 0.0

    before = (count("/api/v1/jobs/{job_id}", "404"), count("unmatched", "404"))
    assert (await client.get(f"/api/v1/jobs/{job_id}")).status_code == 404
    assert (await client.get(f"/api/v1/{job_id}")).status_code == 404
    assert (count("/api/v1/jobs/{job_id}", "404"), count("unmatched", "404")) == (before[0] + 1, before[1] + 1)
    exposed = {
        s.labels.get("route") for family in metrics.REGISTRY.collect() for s in family.samples if "route" in s.labels
    }
    assert not any(job_id in str(route) for route in exposed)
