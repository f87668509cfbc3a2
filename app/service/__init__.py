"""The service: the only code that appends events (DESIGN §4), in parts with one job each.

- `facade.py` — `Service`, the object every writer holds; it delegates to the parts below.
- `group_commit.py` — the write path's queue: batches, a conflicting batch rerun as batches of
  one, exactly-once answers (`_unless_committed`), notifications after commit.
- `transaction.py` — the one body of the write path: a batch loaded, decided, sealed, folded
  and written in one transaction (a lone command is a batch of one).
- `retry.py` — the one retry rule: a whole transaction again while another writer wins.
- `submissions.py` — submits and their Idempotency-Key; `cleanup.py` — job deletion and its
  audit; `streams.py` — appends to the `system` stream with the rows they record;
  `bundle_commands.py` — the bundle streams and rows.
- `notifications.py` — listeners and Postgres wake-ups after a commit.
- `node_registry.py`, `bundle_registry.py` — node lifecycle and bundle directory reads, written
  through the `Service`.
- `outcomes.py` — what the service answers.

No SQL here: every statement is a named function of `app/store/`.
"""

from app.service.bundle_registry import BundleRegistry, version_of
from app.service.facade import Service
from app.service.group_commit import BATCHES_IN_FLIGHT, MAX_BATCH, GroupCommit
from app.service.node_registry import NodeRegistry
from app.service.outcomes import Cleaned, IdempotencyMismatch, Outcome, Submitted, new_job_id, now_ms
from app.service.retry import MAX_ATTEMPTS, retried

__all__ = [
    "BATCHES_IN_FLIGHT",
    "MAX_ATTEMPTS",
    "MAX_BATCH",
    "BundleRegistry",
    "Cleaned",
    "GroupCommit",
    "IdempotencyMismatch",
    "NodeRegistry",
    "Outcome",
    "Service",
    "Submitted",
    "new_job_id",
    "now_ms",
    "retried",
    "version_of",
]
