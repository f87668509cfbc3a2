"""The runtime: a node that claims jobs and runs their agents (SPEC §3.2, §7, §8, §10).

It writes through `app.service` and reads through `app.store`; it holds no SQL of its own.

- `node.py`: `Node`, the composition that starts and stops the parts below (its docstring says
  who owns what between them).
- `jobs.py`: `OwnedJobs`, the runner table, the jobs being started and the free slots.
- `scheduler.py`: `Scheduler`, admission, claims, recovery of orphaned jobs, wake-ups.
- `starter.py`: `JobStarter`, the bootstrap or recovery of one job under its lease's fence.
- `membership.py`: `Membership`, registration, heartbeat and self-fencing.
- `lease_mirror.py`: `ExecutorLeaseMirror`, the `executor_leases` rows of the executor pools.
- `bundle_scanner.py`: `BundleScanner`, the start-up and interval scans of the bundles directory.
- `runner.py`: `JobRunner`, the agents of one job; `executor.py`, `modules.py`: executor
  commands and module agents; `pools.py`: executor pools; `bundle_cache.py`: uploaded bundles
  materialised on this node.
"""
