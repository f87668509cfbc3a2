"""The HTTP API (SPEC §2, Appendix C): Litestar controllers that turn a request into a command for
the write path (`app.service`) or a read-model query (`app.store`), and a result into an answer.

- `app`: `create_app(settings, db, service, node_name=…)`, the factory that wires everything below;
- `serving`: the ASGI server on the listening socket, and the extra API-only processes;
- `context`: `Api`, what every controller is given (settings, database, service, node name);
- controllers, one module per resource: `system` (health, readiness, nodes, summary), `jobs`
  (submit, list, details, controls, messages, cleanup), `events` (a job's events and the global
  feed: JSON, NDJSON, SSE), `bundles` (list, details, reload, upload);
- request reading: `body` (byte limit, content type, JSON rules: `app.domain.json_limits`),
  `params` (query and header rules), `submission` (a `POST /jobs` body in §2.7's order),
  `json_text` (the §2.7 request digest's text);
- answers: `errors` (the error envelope and every exception's status), `schemas` (the OpenAPI
  document; the answer shapes are `app.wire`'s Structs while the routes return the read model's
  dicts: why, and the test that keeps them equal, at its top), `docs` (the Swagger UI page);
- `auth`: bearer tokens and CORS, answered before routing.

No SQL and no SQLAlchemy here: every read goes through a named store function (`read_model`,
`event_pages`, `health`), every write through `app.service`. Nothing outside this package
imports it but `app.__main__`, which starts the server.
"""
