"""The pure core: standard library only, no clock, no I/O; ids and "now" are passed in.

- Jobs: `job.py` (commands and `decide`), `events.py` (the event catalogue), `projection.py`
  (the job and agent projections as a fold), `upcasting.py` (event schema versions),
  `bundle.py` (the bundle stream), `canonical.py` (canonical JSON, hashes, timestamps).
- Input: `manifest.py` and `manifest_schema.py` (what a manifest may say, which agent types it
  accepts), `messages.py` (message envelopes and bodies), `json_limits.py` (the JSON accepted
  from outside).
- Agent steps: `agent_kinds.py` is the table, one row per agent type, of the kind of step it
  takes and the pure function that says what the step means; `agents.py` (step actions and
  outcomes, the router, aggregator and sensor handlers, actions turned into events),
  `executor.py` and `executor_step.py` (an executor's settings and process rules; what its
  lease, attempts and finished run record), `module_step.py` (what a module agent returned),
  `steps.py` (an outcome as the command that records it; decided steps chained after a command),
  `runtime_state.py` (a job as its runner sees it, folded from its events).
"""
