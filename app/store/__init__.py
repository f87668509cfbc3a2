"""The SQL edge (SQLAlchemy Core over asyncpg and aiosqlite): every statement is a named function here.

Nothing outside this package imports SQLAlchemy or asks which database it talks to
(tests/unit/test_architecture.py fails the suite if anything does); `database.py` sets each
dialect up, and each module below picks its dialect's form of a statement itself (SKIP LOCKED,
id lists, row locks, the one-statement claim).

- Schema and connections: `tables.py` (the logical schema), `database.py` (engines, the write and
  read transactions, failure classification, `ping`), `database_url.py`, `migrate.py` (Alembic).
- The log: `event_store.py` (seal, insert, positions, reads), `json_columns.py` (stored JSON read
  back), `event_pages.py` (the API's event pages), `rebuild.py` (projections rebuilt and verified).
- What the write path saves beside the log: `projector.py` (job and agent rows), `bundles.py` (the
  bundle row), `archives.py` (uploaded archives), `leases.py` (job leases and their fencing, the
  executor-lease mirror), `cleanup.py` (a job's rows deleted).
- What readers ask: `read_model.py` (every query the HTTP API reads), `scheduling.py` (jobs to
  admit, claim and recover, for the runtime), `nodes.py` (the nodes table), `health.py` (readiness),
  `wakeups.py` (which commits wake a node, and Postgres NOTIFY/LISTEN).
"""
