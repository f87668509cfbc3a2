"""Job routes: submit, list, details, cancel, pause, resume, external messages, cleanup (SPEC §2.7–§2.13, §2.15)."""

from __future__ import annotations

import os
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, HeaderParameter, QueryParameter

from app.domain.canonical import canonical_json, format_ms, sha256_hex
from app.domain.job import CancelJob, Command, DeliverExternal, PauseJob, ResumeJob
from app.domain.messages import (
    MESSAGE_ID_BYTES,
    check_content_encoding,
    message_id_from_bytes,
    normalize_message,
)
from app.http import params
from app.http.body import json_object_body
from app.http.context import Api, ApiDep
from app.http.errors import ApiError, job_not_found
from app.http.schemas import (
    DIGITS_PATTERN,
    EXTERNAL_MESSAGE_SCHEMA,
    IDEMPOTENCY_KEY_PATTERN,
    LIMIT_PATTERN,
    STATUS_LIST,
    SUBMISSION_SCHEMA,
    operation_class,
    responses,
    text_parameter,
)
from app.http.submission import check_idempotency_key, key_conflict, submit
from app.service import IdempotencyMismatch, Outcome
from app.store import read_model
from app.wire import Cleanup, JobDetails, JobList, MessageAccepted, StatusChange, Submitted

JOB = "/{job_id:str}"

# SPEC §2.7 for submits; SPEC C.5.9 for the controls (cancel, pause, resume, messages, cleanup).
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(name="Idempotency-Key", required=False, schema_extra=text_parameter(IDEMPOTENCY_KEY_PATTERN)),
]
REPLAYED = {"Idempotent-Replayed": "true"}


def _keyed(key: str | None, route: str, body: dict[str, Any] | None = None) -> tuple[str | None, str | None]:
    """(command id, request digest) of a control with an Idempotency-Key (400 for a bad key), else (None, None).

    The command id is the key, scoped to the job by the log's (stream_id, command_id) unique index;
    the digest covers the route and the parsed body, so a key reused for another control or
    another message is a 409, as a reused submit key is (SPEC §2.7).
    """
    key = check_idempotency_key(key)
    if key is None:
        return None, None
    return f"key:{key}", sha256_hex(canonical_json({"route": route, "body": body}))


async def _control(api: Api, job_id: str, command: Command, keyed: tuple[str | None, str | None], key: str | None) -> Outcome:
    """Execute an operator command once per Idempotency-Key: a retry answers the first commit (`replayed`)."""
    command_id, digest = keyed
    try:
        return await api.service.execute(job_id, command, command_id=command_id, request_sha256=digest)
    except IdempotencyMismatch:
        assert key is not None
        raise key_conflict(key) from None


def _answer(content: dict[str, Any], outcome: Outcome, status_code: int = 200) -> Response[dict[str, Any]]:
    return Response(content, status_code=status_code, headers=REPLAYED if outcome.replayed else None)


def _location(job_id: str) -> dict[str, str]:
    return {"Location": f"/api/v1/jobs/{job_id}"}


def _external_message(api: Api, job_id: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The agent id and the normalised external message of a `POST /messages` body (400 when invalid)."""
    agent_id = body.get("agent_id")
    if not isinstance(agent_id, str) or not agent_id:
        raise ApiError(400, "agent_id is required")
    raw = body.get("message", {})
    if not isinstance(raw, dict):
        raise ApiError(400, "message must be an object")
    message = normalize_message(
        raw,
        message_id=message_id_from_bytes(os.urandom(MESSAGE_ID_BYTES)),
        job_id=job_id,
        to=agent_id,
        timestamp=format_ms(api.now_ms()),
        correlation_id=str(uuid.uuid4()),
        default_from="external",
        default_type="command",
        default_class="command",
    )
    problem = check_content_encoding(message["envelope"]["content_encoding"])
    if problem is not None:
        raise ApiError(400, problem)
    return agent_id, message


class JobsController(Controller):
    """Jobs: the write routes turn requests into commands, the read routes query the read model."""

    path = "/api/v1/jobs"
    tags = ["jobs"]

    @post(
        "/",
        operation_id="submitJob",
        operation_class=operation_class(body=SUBMISSION_SCHEMA, required=True),
        status_code=201,
        responses=responses(
            {
                201: (Submitted, "Job submitted"),
                200: (Submitted, "Idempotent replay of an earlier submission"),
            },
            (400, 403, 404, 409, 413, 415),
        ),
    )
    async def submit(
        self,
        request: Request[Any, Any, Any],
        api: ApiDep,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[dict[str, Any]]:
        """Submit a manifest or a registered bundle; replays an earlier submission with the same key."""
        body = await json_object_body(request, api.settings.max_body_bytes)
        result = await submit(api, body or {}, idempotency_key)
        headers = _location(result.job_id)
        if result.replayed:
            headers["Idempotent-Replayed"] = "true"
        content = {"id": result.job_id, "job_id": result.job_id, "status": result.status}
        return Response(content, status_code=200 if result.replayed else 201, headers=headers)

    @get(
        "/",
        operation_id="listJobs",
        responses=responses({200: (JobList, "Jobs, most recently updated first")}, (400,)),
    )
    async def list_jobs(
        self,
        api: ApiDep,
        limit: Annotated[str | None, QueryParameter(schema_extra=text_parameter(LIMIT_PATTERN))] = None,
        cursor: Annotated[str | None, QueryParameter(schema_extra=text_parameter())] = None,
        status: Annotated[list[str] | None, QueryParameter(schema_extra=STATUS_LIST)] = None,
        graph_id: Annotated[str | None, QueryParameter(schema_extra=text_parameter())] = None,
        include_terminal: Annotated[str | None, QueryParameter(schema_extra=text_parameter())] = None,
    ) -> dict[str, Any]:
        """A page of JobSummaries (keyset paging by `next_cursor`)."""
        size = params.limit(limit, 100)
        after = None
        if cursor is not None:
            after = read_model.decode_cursor(cursor)
            if after is None:
                raise ApiError(400, "invalid cursor")
        wanted = params.statuses(status, include_terminal)
        async with api.db.read() as conn:
            page = await read_model.list_jobs(
                conn, limit=size, after=after, statuses=wanted, graph_id=graph_id, now_ms=api.now_ms()
            )
        return {"data": page.data, "next_cursor": page.next_cursor}

    @post(
        "/cleanup",
        operation_id="cleanupJobs",
        status_code=200,
        responses=responses({200: (Cleanup, "Deleted jobs, ascending job id")}, (400, 403, 405, 409)),
    )
    async def cleanup(
        self,
        api: ApiDep,
        all_jobs: Annotated[
            str | None, QueryParameter(name="all", required=False, schema_extra=text_parameter())
        ] = None,
        older_than: Annotated[str | None, QueryParameter(schema_extra=text_parameter(DIGITS_PATTERN))] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[dict[str, Any]]:
        """Delete terminal jobs (with `all`, cancel and delete live ones too), each audited."""
        age = params.non_negative(older_than, "older_than must be a non-negative integer")
        key = check_idempotency_key(idempotency_key)
        include_live = params.flag(all_jobs)
        digest = None
        if key is not None:
            request = {"route": "cleanup", "all": include_live, "older_than": age}
            digest = sha256_hex(canonical_json(request))
        if age is not None:
            # Nothing is older than the epoch: a larger age selects nothing, and stays representable.
            age = min(age, api.now_ms() // 1000)
        try:
            cleaned = await api.service.cleanup(
                include_live=include_live, older_than=age, node=api.node_name,
                idempotency_key=key, request_sha256=digest,
            )
        except IdempotencyMismatch:
            assert key is not None
            raise key_conflict(key) from None
        content = {"deleted_count": len(cleaned.deleted), "deleted_jobs": cleaned.deleted}
        return Response(content, status_code=200, headers=REPLAYED if cleaned.replayed else None)

    @get(JOB, operation_id="getJob", responses=responses({200: (JobDetails, "Job details")}, (400, 404)))
    async def details(self, api: ApiDep, job_id: FromPath[str]) -> dict[str, Any]:
        """The job record, summary, agents, 25 newest events and sandboxes."""
        async with api.db.read() as conn:
            found = await read_model.job_details(conn, job_id, now_ms=api.now_ms())
        if found is None:
            raise job_not_found(job_id)
        return found

    @post(
        JOB + "/cancel",
        operation_id="cancelJob",
        status_code=200,
        responses=responses({200: (StatusChange, "Cancelled (or already cancelled)")}, (400, 403, 404, 409)),
    )
    async def cancel(
        self, api: ApiDep, job_id: FromPath[str], idempotency_key: IdempotencyKey = None
    ) -> Response[dict[str, Any]]:
        """Cancel a live job; idempotent for a cancelled one."""
        outcome = await _control(api, job_id, CancelJob(), _keyed(idempotency_key, "cancel"), idempotency_key)
        return _answer({"status": "cancelled", "job_id": job_id}, outcome)

    @post(
        JOB + "/pause",
        operation_id="pauseJob",
        status_code=200,
        responses=responses({200: (StatusChange, "Paused")}, (400, 403, 404, 409)),
    )
    async def pause(
        self, api: ApiDep, job_id: FromPath[str], idempotency_key: IdempotencyKey = None
    ) -> Response[dict[str, Any]]:
        """Pause a running job."""
        outcome = await _control(api, job_id, PauseJob(), _keyed(idempotency_key, "pause"), idempotency_key)
        return _answer({"status": "paused", "job_id": job_id}, outcome)

    @post(
        JOB + "/resume",
        operation_id="resumeJob",
        status_code=200,
        responses=responses({200: (StatusChange, "Resumed: the job runs again")}, (400, 403, 404, 409)),
    )
    async def resume(
        self, api: ApiDep, job_id: FromPath[str], idempotency_key: IdempotencyKey = None
    ) -> Response[dict[str, Any]]:
        """Resume a paused job."""
        outcome = await _control(api, job_id, ResumeJob(), _keyed(idempotency_key, "resume"), idempotency_key)
        return _answer({"status": "resumed", "job_id": job_id}, outcome)

    @post(
        JOB + "/messages",
        operation_id="deliverMessage",
        operation_class=operation_class(body=EXTERNAL_MESSAGE_SCHEMA, required=True),
        status_code=202,
        responses=responses({202: (MessageAccepted, "Message delivered")}, (400, 403, 404, 409, 413, 415)),
    )
    async def deliver(
        self,
        request: Request[Any, Any, Any],
        api: ApiDep,
        job_id: FromPath[str],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[dict[str, Any]]:
        """Deliver an external message to an agent of a running or paused job."""
        body = await json_object_body(request, api.settings.max_body_bytes)
        keyed = _keyed(idempotency_key, "messages", body or {})
        async with api.db.read() as conn:
            if await read_model.job_status(conn, job_id) is None:
                raise job_not_found(job_id)
        agent_id, message = _external_message(api, job_id, body or {})
        outcome = await _control(api, job_id, DeliverExternal(agent_id, message), keyed, idempotency_key)
        delivered = outcome.events[0] if outcome.replayed else None
        if delivered is not None:  # the first call's message, not the one this retry would have sent
            agent_id, message = str(delivered.agent_id), delivered.payload["message"]
        content = {"job_id": job_id, "agent_id": agent_id, "message_id": message["envelope"]["message_id"]}
        return _answer(content, outcome, 202)
