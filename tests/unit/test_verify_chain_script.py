"""examples/audit/verify_chain.py over HTTP: the bearer token and base URL it is given, its output
and exit codes (the chains themselves: tests/unit/test_js_verifier.py, tests/e2e/test_audit.py)."""

from __future__ import annotations

import contextlib
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.unit.test_js_verifier import JOB, chain, load_python_verifier

TOKEN = "s3cret"
EVENTS = chain([("pyjson-sha256", {"n": 1.0}), ("jcs-sha256", {"n": 1e-7, "big": 1e16})])


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._answer(401, b'{"error": "unauthorized"}', "application/json")
        elif self.path != f"/api/v1/jobs/{JOB}/events" or "x-ndjson" not in self.headers.get("Accept", ""):
            self._answer(404, b'{"error": "not found"}', "application/json")
        else:
            body = "".join(json.dumps(e) + "\n" for e in EVENTS).encode()
            self._answer(200, body, "application/x-ndjson")

    def _answer(self, status: int, body: bytes, media_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = load_python_verifier().main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_it_reads_the_events_with_the_token_and_prints_ok(server: str) -> None:
    assert run(JOB, "--url", server, "--token", TOKEN) == (0, f"OK 2 events, head {EVENTS[-1]['hash']}\n", "")


def test_a_refused_token_or_an_unknown_job_cannot_be_read(server: str) -> None:
    code, out, err = run(JOB, "--url", server, "--token", "wrong")
    assert (code, out) == (2, "") and "HTTP Error 401" in err
    code, out, err = run("other-1-000000000000", "--url", server, "--token", TOKEN)
    assert (code, out) == (2, "") and "HTTP Error 404" in err


def test_the_token_defaults_to_the_environment(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRROR_NEURON_API_TOKEN", TOKEN)
    assert run(JOB, "--url", server)[0] == 0
