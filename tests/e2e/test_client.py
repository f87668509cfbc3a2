"""`app.client` against a real `mirror-neuron serve` process, on SQLite and on Postgres (issue 20).

Every method of `Client` and `AsyncClient`, the error type with the server's `errors`, paging across
several pages, `wait` following the event stream, and follows that resume after a dropped connection
(a small TCP proxy of the test's own cuts every open connection).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from app.client import ApiError, AsyncClient, Client, Progress
from tests.e2e.conftest import EXAMPLES, NodeSpec, serving_examples
from tests.runtime.processes import NodeProcess

PAUSE_RESUME = json.loads((EXAMPLES / "manifests" / "pause_resume.json").read_text())
# §13.5 flow B: the sink waits for ten messages, so the job runs until it is cancelled.
NEVER_COMPLETES = {**PAUSE_RESUME, "nodes": [PAUSE_RESUME["nodes"][0], {**PAUSE_RESUME["nodes"][1], "config": {"complete_after": 10}}]}


class CuttingProxy:
    """A loopback TCP proxy whose `cut()` closes every connection open through it right now."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self.lock:
                self.open += [client, upstream]
                self.connections += 1
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self.lock:
            for sock in self.open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.open.clear()

    def close(self) -> None:
        self.listener.close()
        self.cut()


@pytest.fixture(scope="module")
def node_spec() -> NodeSpec:
    """One node serving the examples' bundles (tests/e2e/conftest.py starts it)."""
    return serving_examples("client-node")


@pytest.fixture
def mn(server: NodeProcess) -> Iterator[Client]:
    with Client(server.url) as client:
        yield client


def _until(client: Client, job_id: str, event_type: str, agent_id: str | None = None) -> None:
    for event in client.follow_events(job_id):
        if event.type == event_type and (agent_id is None or event.agent_id == agent_id):
            return
    raise AssertionError(f"{job_id} ended before {event_type}")


def test_system_reads(mn: Client, server: NodeProcess) -> None:
    assert mn.health() and mn.ready()
    nodes = mn.nodes()
    assert [node.name for node in nodes] == ["client-node"] and nodes[0].is_self
    summary = mn.summary()
    assert [node.name for node in summary.nodes] == ["client-node"]
    assert set(summary.job_counts) == {"pending", "queued", "running", "paused", "completed", "failed", "cancelled"}
    assert mn.openapi()["openapi"].startswith("3.1")
    with Client(server.url + "/api/v1/") as same:  # the API prefix is accepted too
        assert same.health()


def test_submit_wait_and_read_back(mn: Client) -> None:
    seen: list[Progress] = []
    counts: list[int] = []

    def progress(p: Progress) -> None:
        seen.append(p)
        counts.append(p.events)

    job = mn.submit(bundle_id="prime_sweep_4_workers")
    assert job.status == "pending" and not job.replayed
    details = mn.wait(job.job_id, timeout=300, on_progress=progress)
    assert details.job.status == "completed"
    assert details.job.result is not None and details.job.result["output"]["prime_count"] == 32
    last = seen[-1]
    assert last.status == "completed" and last.events == details.job.last_sequence
    assert last.agents_total == len(details.agents) == len(last.agents_done) == 7
    assert last.executor_runs == len(details.sandboxes) == 5 and last.executor_failures == 0
    assert counts == list(range(1, last.events + 1))  # one call per event, in order
    events = list(mn.iter_events(job.job_id))
    assert [e.sequence for e in events] == list(range(1, details.job.last_sequence + 1))
    assert events[-1].hash == details.job.last_hash
    page = mn.events(job.job_id, after=3, limit=5)
    assert [e.sequence for e in page.data] == [4, 5, 6, 7, 8] and page.next_after == 8
    assert [e.sequence for e in mn.follow_events(job.job_id, after=events[-2].sequence)] == [events[-1].sequence]
    assert [e.sequence for e in mn.follow_events(job.job_id, after=events[-1].sequence)] == []


def test_idempotent_submission_and_its_conflict(mn: Client) -> None:
    first = mn.submit(PAUSE_RESUME, idempotency_key="client-key-1")
    again = mn.submit(PAUSE_RESUME, idempotency_key="client-key-1")
    assert again.job_id == first.job_id and again.replayed and not first.replayed
    with pytest.raises(ApiError) as conflict:
        mn.submit({**PAUSE_RESUME, "job_name": "other"}, idempotency_key="client-key-1")
    assert conflict.value.status == 409
    assert conflict.value.error == "Idempotency-Key client-key-1 was already used with a different request body"
    mn.cancel(first.job_id)


def test_errors_carry_status_error_and_errors(mn: Client, server: NodeProcess) -> None:
    with pytest.raises(ApiError) as invalid:
        mn.submit({"graph": {}, "agents": []})
    assert invalid.value.status == 400 and invalid.value.error == "Manifest validation failed"
    assert invalid.value.errors == [
        "manifest_version is required",
        "graph_id is required",
        "nodes must not be empty",
        "manifest must define at least one entrypoint or one node with role root/root_coordinator",
    ]
    with pytest.raises(ApiError) as missing:
        mn.job("nope-1-000000000000")
    assert (missing.value.status, missing.value.error) == (404, "job nope-1-000000000000 was not found")
    assert missing.value.errors == []
    with pytest.raises(ApiError) as unknown_bundle:
        mn.submit(bundle_id="nobody")
    assert (unknown_bundle.value.status, unknown_bundle.value.error) == (404, "Bundle nobody not found")
    with pytest.raises(ApiError, match="^HTTP 400: invalid cursor$") as paging:
        mn.jobs(cursor="bad")
    assert paging.value.error == "invalid cursor"
    with pytest.raises(ValueError):
        mn.submit(PAUSE_RESUME, bundle_id="research_flow_v1")
    with Client("http://127.0.0.1:9", retries=1) as nowhere, pytest.raises(ApiError) as unreachable:
        nowhere.health()
    assert unreachable.value.status == 0 and "cannot reach http://127.0.0.1:9" in unreachable.value.error


def test_pause_message_resume_and_cancel(mn: Client) -> None:
    job = mn.submit(PAUSE_RESUME)
    _until(mn, job.job_id, "message_processed", "root")
    assert (mn.pause(job.job_id).status, mn.job(job.job_id).job.status) == ("paused", "paused")
    with pytest.raises(ApiError) as twice:
        mn.pause(job.job_id)
    assert (twice.value.status, twice.value.error) == (409, f"job {job.job_id} is not running")
    accepted = mn.message(job.job_id, "sink", {"type": "manual_result", "payload": {"text": "approved"}})
    assert accepted.agent_id == "sink" and len(accepted.message_id) == 14
    sink = next(a for a in mn.job(job.job_id).agents if a.agent_id == "sink")
    assert (sink.mailbox_depth, sink.status) == (1, "paused")
    assert mn.resume(job.job_id).status == "resumed"
    done = mn.wait(job.job_id, timeout=60)
    assert done.job.result is not None and done.job.result["output"]["last_message"] == {"text": "approved"}
    with pytest.raises(ApiError) as ghost:
        mn.message(job.job_id, "ghost")
    assert (ghost.value.status, ghost.value.error) == (404, f"agent ghost was not found in job {job.job_id}")
    with pytest.raises(ApiError) as terminal:
        mn.message(job.job_id, "sink")
    assert terminal.value.status == 409
    blocked = mn.submit(NEVER_COMPLETES)
    _until(mn, blocked.job_id, "job_running")
    assert mn.cancel(blocked.job_id).status == "cancelled"
    assert mn.cancel(blocked.job_id).status == "cancelled"
    final = mn.wait(blocked.job_id, timeout=30)
    assert final.job.status == "cancelled" and final.job.result == {"reason": "cancelled by operator"}


def test_paging_jobs_and_the_feed_across_pages(mn: Client) -> None:
    ids = {mn.submit(PAUSE_RESUME | {"graph_id": "paging_graph"}).job_id for _ in range(7)}
    for job_id in ids:  # ended jobs are not updated any more, so no row moves between pages (§2.8)
        mn.cancel(job_id)
    listed = list(mn.iter_jobs(graph_id="paging_graph", page_size=2))
    assert {job.job_id for job in listed} == ids and len(listed) == 7  # four pages
    first = mn.jobs(graph_id="paging_graph", limit=3)
    assert len(first.data) == 3 and first.next_cursor is not None
    second = mn.jobs(graph_id="paging_graph", limit=3, cursor=first.next_cursor)
    assert not {j.job_id for j in first.data} & {j.job_id for j in second.data}
    everything = list(mn.iter_feed(page_size=10))
    positions = [event.position for event in everything]
    assert positions == sorted(set(positions)) and len(everything) > 30  # many pages of ten
    assert [e.position for e in mn.iter_feed(after=positions[4], page_size=3)][:3] == positions[5:8]
    assert mn.feed(after=positions[-1]).data == [] and mn.feed(after=positions[-1]).next_after is None
    live = mn.jobs(status=["running", "paused"], include_terminal=False)
    assert all(job.status in ("running", "paused") for job in live.data)


def test_follow_resumes_after_a_dropped_connection(server: NodeProcess) -> None:
    proxy = CuttingProxy(server.port)
    try:
        with Client(proxy.url, retries=5) as through, Client(server.url) as direct:
            start = direct.feed(after=0, limit=1000).data
            after = start[-1].position if start else 0
            follower = through.follow_feed(after=after)
            job = direct.submit(PAUSE_RESUME)
            got = [next(follower) for _ in range(3)]
            proxy.cut()  # the follow's connection is gone mid-stream
            direct.cancel(job.job_id)
            seen = list(got)
            while (seen[-1].job_id, seen[-1].type) != (job.job_id, "job_cancelled"):
                seen.append(next(follower))
            follower.close()  # type: ignore[attr-defined]
            expected = [e for e in direct.iter_feed(after=after) if e.job_id == job.job_id]
            mine = [e for e in seen if e.job_id == job.job_id]
            assert [e.event_id for e in mine] == [e.event_id for e in expected]
            assert len({e.position for e in seen}) == len(seen)
            assert proxy.connections >= 2  # it really reconnected

            # The job stream too: a cut in the middle of `wait` loses and repeats nothing.
            second = direct.submit(PAUSE_RESUME)
            counted: list[int] = []

            def progress(p: Progress) -> None:
                counted.append(p.events)
                if p.events == 3:
                    proxy.cut()
                if p.last_event is not None and p.last_event.type == "message_processed":
                    direct.cancel(second.job_id)

            final = through.wait(second.job_id, timeout=60, on_progress=progress)
            assert final.job.status == "cancelled"
            assert counted == list(range(1, final.job.last_sequence + 1))
    finally:
        proxy.close()


def test_bundles(mn: Client) -> None:
    bundles = mn.bundles()
    assert "prime_sweep_4_workers" in [b.bundle_id for b in bundles]
    detail = mn.bundle("research_flow_v1")
    assert detail.graph_id == "research_flow_v1" and detail.history[0].event == "bundle_registered"
    unchanged = mn.reload_bundle("research_flow_v1")
    assert unchanged.changed is False and unchanged.message == "No bundle changes detected"
    with pytest.raises(ApiError) as missing:
        mn.bundle("nobody")
    assert missing.value.status == 404


def test_wait_times_out(mn: Client) -> None:
    job = mn.submit(NEVER_COMPLETES)
    with pytest.raises(TimeoutError):
        mn.wait(job.job_id, timeout=1.5)
    mn.cancel(job.job_id)


def test_cleanup(mn: Client) -> None:
    job = mn.submit(PAUSE_RESUME)
    mn.cancel(job.job_id)
    cleaned = mn.cleanup()
    assert job.job_id in cleaned.deleted_jobs and cleaned.deleted_count == len(cleaned.deleted_jobs)
    assert mn.cleanup(older_than=10**6).deleted_count == 0
    with pytest.raises(ApiError) as gone:
        mn.job(job.job_id)
    assert gone.value.status == 404


async def test_the_async_client(server: NodeProcess) -> None:
    async with AsyncClient(server.url) as mn:
        assert await mn.health() and await mn.ready()
        assert (await mn.nodes())[0].name == "client-node"
        assert (await mn.summary()).jobs_total >= 0
        assert (await mn.openapi())["info"]["title"] == "MirrorNeuron"
        job = await mn.submit(bundle_id="research_flow_v1", idempotency_key="async-key")
        assert (await mn.submit(bundle_id="research_flow_v1", idempotency_key="async-key")).replayed
        progress: list[int] = []
        details = await mn.wait(job.job_id, timeout=120, on_progress=lambda p: progress.append(p.events))
        assert details.job.status == "completed" and progress[-1] == details.job.last_sequence
        streamed = [e async for e in mn.iter_events(job.job_id)]
        followed = [e async for e in mn.follow_events(job.job_id)]
        assert [e.hash for e in streamed] == [e.hash for e in followed] == [
            e.hash for e in (await mn.events(job.job_id)).data
        ]
        assert [j.job_id async for j in mn.iter_jobs(graph_id="research_flow_v1", page_size=1)][0] == job.job_id
        feed = [e async for e in mn.iter_feed(after=streamed[0].position - 1, page_size=2)]
        assert [e.event_id for e in feed if e.job_id == job.job_id] == [e.event_id for e in streamed]
        follower = mn.follow_feed(after=streamed[-1].position - 1)
        assert (await follower.__anext__()).event_id == streamed[-1].event_id
        await follower.aclose()  # type: ignore[attr-defined]
        live = await mn.submit(PAUSE_RESUME)
        async for event in mn.follow_events(live.job_id):
            if event.type == "message_processed":
                break
        assert (await mn.pause(live.job_id)).status == "paused"
        assert (await mn.message(live.job_id, "sink", {"type": "manual_result", "payload": {}})).agent_id == "sink"
        assert (await mn.resume(live.job_id)).status == "resumed"
        assert (await mn.wait(live.job_id, timeout=60)).job.status == "completed"
        with pytest.raises(ApiError) as invalid:
            await mn.submit({"graph_id": "x"})
        assert invalid.value.status == 400 and "manifest_version is required" in invalid.value.errors
        assert (await mn.job(job.job_id)).summary.live is False
        assert "research_flow_v1" in [b.bundle_id for b in await mn.bundles()]
        assert (await mn.bundle("research_flow_v1")).bundle_id == "research_flow_v1"
        assert (await mn.reload_bundle("research_flow_v1")).changed is False
        cancelled = await mn.submit(PAUSE_RESUME)
        assert (await mn.cancel(cancelled.job_id)).status == "cancelled"
        assert cancelled.job_id in (await mn.cleanup()).deleted_jobs
