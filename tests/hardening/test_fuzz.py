"""Schemathesis over the served OpenAPI document, on both databases (issue 6 item 1).

A real server (`create_app` under uvicorn on a loopback port, API only: nothing submitted is ever
executed) serves `/api/v1/schema/openapi.json` with a bearer token configured; schemathesis reads
that document and sends generated requests to every operation: schema-valid ones (positive),
schema-invalid ones (negative), and — so that the write paths are reached, not only their 404s —
requests aimed at live rows (running and paused jobs, a registered bundle) and at valid
submissions. Every answer must be documented (status, content type, body schema, headers), no
answer may be a 5xx, invalid input must be refused with a 4xx, and requests without the token
must be refused (the document declares the bearer scheme).

`positive_data_acceptance` (a schema-valid request must not get a 400) is checked except where
validity depends on more than one input, which no schema can express: a submitted manifest
(edges must name existing nodes, §5.6), an uploaded bundle (a schema says "a file", not "a zip
holding a valid bundle", C.2.1), an opaque `cursor` (only the server's own cursors decode), and
`follow` (valid only with a streaming `Accept`, §2.14), and a body holding an integer that no
double equals (refused, C.1.2: a JSON number is a double, which a schema's `integer` does not say).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.config import Settings
from app.domain.canonical import canonical_json, is_out_of_range
from app.domain.job import PauseJob
from app.http.app import OPENAPI_PATH, create_app
from app.service import Service
from app.store.database import Database
from tests.api.conftest import add_node, lifecycle_manifest, register_bundle, run, write_bundle
from tests.conftest import reset
from tests.hardening.server import served

TOKEN = "fuzz-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_EXAMPLES = 50
SCHEMA_URL = OPENAPI_PATH + "/openapi.json"
BUNDLE_ID = "fuzz_bundle"


def _operation_labels() -> list[str]:
    """Every operation of the document, read from the application without serving it."""
    unused = Database("sqlite+aiosqlite:///never-opened.db")  # engines connect lazily: nothing is opened
    app = create_app(Settings(), unused, Service(unused), node_name="schema")
    paths = app.openapi_schema.to_schema()["paths"]
    return sorted(f"{method.upper()} {path}" for path, item in paths.items() for method in item)


OPERATIONS = _operation_labels()

# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
async def database(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The fuzzed database: emptied, with a node row and a registered bundle."""
    db = Database(database_url)
    try:
        await reset(db)
        await add_node(db, "fuzz-node")
        bundle = write_bundle(tmp_path_factory.mktemp("fuzz"), BUNDLE_ID, lifecycle_manifest(BUNDLE_ID))
        await register_bundle(Service(db), bundle)
    finally:
        await db.dispose()
    return database_url


@pytest.fixture(scope="module")
def api(database: str) -> Iterator[tuple[str, Any]]:
    """The served base URL and the schema schemathesis loaded from it."""
    with served(Settings(database_url=database, api_token=TOKEN)) as base:
        schema = schemathesis.openapi.from_url(base + SCHEMA_URL, headers=AUTH)
        # Unknown query parameters are ignored by design (§2.1), so adding some is not invalid
        # input; the token is sent by the test itself, and `ignored_auth` checks requests without it;
        # U+0000 is refused in every string of a body (Appendix B.3), which test_bad_input covers.
        schema.config.generation.update(
            allow_extra_parameters=False, with_security_parameters=False, allow_x00=False
        )
        yield base, schema


@pytest.fixture
async def live_jobs(database: str) -> list[str]:
    """Fresh jobs for one test: two running, one paused, one pending (earlier tests may end them)."""
    db = Database(database)
    service = Service(db)
    try:
        app = create_app(Settings(), db, service, node_name="fuzz-node")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            ids = [
                (await client.post("/api/v1/jobs", json=lifecycle_manifest())).json()["job_id"]
                for _ in range(4)
            ]
        for job_id in ids[:3]:
            await run(db, service, job_id)
        await service.execute(ids[2], PauseJob())
        return ids
    finally:
        await db.dispose()


# ------------------------------------------------------------------------------------ strategies

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)  # JSON has no infinity: the client could not send it
    | st.text(max_size=12)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_objects = st.dictionaries(st.text(max_size=8), _json, max_size=4)


def _manifest(graph_id: str, job_name: Any, metadata: Any, inputs: Any, daemon: bool) -> dict[str, Any]:
    body = lifecycle_manifest(graph_id)
    body.update(job_name=job_name, metadata=metadata, initial_inputs=inputs, daemon=daemon)
    return body


_valid_submissions = st.builds(
    _manifest,
    st.from_regex(r"[A-Za-z0-9_.\-]{1,128}", fullmatch=True),
    st.none() | st.text(max_size=20),
    _json,
    st.none() | _objects | st.lists(_objects, max_size=2),
    st.booleans(),
) | st.builds(
    lambda inputs: {"bundle_id": BUNDLE_ID, "initial_inputs": inputs},
    st.none() | _objects | st.lists(_objects),
)

_encodings = st.sampled_from(["identity", "gzip", None])
_messages = st.fixed_dictionaries(
    {},
    optional={
        "type": st.text(max_size=10),
        "payload": _json,
        "body": _json,
        "content_encoding": _encodings,
        "headers": _json,
        "stream": _json,
    },
) | st.fixed_dictionaries(
    {
        "envelope": st.fixed_dictionaries(
            {}, optional={"content_encoding": _encodings, "type": st.text(max_size=5)}
        )
    },
    optional={"body": _json, "headers": _json},
)
_deliveries = st.builds(
    lambda agent_id, message: {"agent_id": agent_id, "message": message},
    st.sampled_from(["root", "sink", "ghost"]) | st.text(min_size=1, max_size=6),
    _messages,
)

# Schema-valid bodies aimed at the write paths, documents that can succeed.
AIMED_BODIES = {"POST /api/v1/jobs": _valid_submissions, "POST /api/v1/jobs/{job_id}/messages": _deliveries}


def _aimed(operation: Any, label: str, jobs: list[str]) -> list[st.SearchStrategy[Any]]:
    """Cases against the live rows: real job and bundle ids, valid bodies and generated invalid ones."""
    path: dict[str, st.SearchStrategy[str]] = {}
    if "job_id" in operation.path_parameters:
        path["job_id"] = st.sampled_from(jobs)
    if "bundle_id" in operation.path_parameters:
        path["bundle_id"] = st.just(BUNDLE_ID)
    bodies = AIMED_BODIES.get(label)
    if not path and bodies is None:
        return []
    ids = st.fixed_dictionaries(path).map(lambda chosen: chosen or None)
    valid = ids.flatmap(lambda chosen: operation.as_strategy(path_parameters=chosen))
    if bodies is not None:
        valid = st.tuples(ids, bodies).flatmap(
            lambda pair: operation.as_strategy(path_parameters=pair[0], body=pair[1])
        )
    invalid = ids.flatmap(
        lambda chosen: operation.as_strategy(generation_mode=GenerationMode.NEGATIVE, path_parameters=chosen)
    )
    return [valid, invalid]


def _strategy(operation: Any, label: str, jobs: list[str]) -> st.SearchStrategy[Any]:
    """Positive and negative generated cases, plus cases aimed at live rows."""
    generated = [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]
    return st.one_of(*generated, *_aimed(operation, label, jobs))


def _excluded(case: Any) -> list[Any]:
    """Checks that do not apply to a case (see the module docstring)."""
    query = case.query or {}
    cross_field = (
        case.operation.label in ("POST /api/v1/jobs", "POST /api/v1/bundles/upload")
        or "cursor" in query
        or query.get("follow") in ("true", "1")
    )
    return [positive_data_acceptance] if cross_field or _holds_inexact_integer(case.body) else []


def _holds_inexact_integer(value: Any) -> bool:
    """True when a JSON body holds an integer that no IEEE-754 double equals (SPEC C.1.2): the
    domain's own rule, as the server applies it (`canonical_json` refuses such a value)."""
    try:
        canonical_json(value)
    except ValueError as exc:
        return is_out_of_range(exc)
    except TypeError:  # not a JSON value (raw bytes of a negative case)
        return False
    return False


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_answers_as_documented(api: tuple[str, Any], live_jobs: list[str], label: str) -> None:
    base, schema = api
    method, path = label.split(" ", 1)
    operation = schema[path][method]

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(operation, label, live_jobs))
    def check(case: Any) -> None:
        case.call_and_validate(base_url=base, headers=AUTH, excluded_checks=_excluded(case), timeout=30)

    check()


def test_the_inexact_integer_rule_sees_only_integers_no_double_equals() -> None:
    assert _holds_inexact_integer({"": [-311, -9223372036854775807]})
    assert _holds_inexact_integer([10**400])  # no double at all
    assert not _holds_inexact_integer({"a": [2**53, -(2**60), 1.5, True, "9223372036854775807"]})
