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
- `runner.py`: `JobRunner`, the agents of one job: a task per agent, the fold of the job's log,
  and each step handed on by the kind of its agent type (`app/domain/agent_kinds.KINDS`) to
  `commits.py` (`JobCommits`: every commit, decided steps and their chains),
  `executor_steps.py` (`ExecutorSteps`: lease and attempts of a command) or `module_steps.py`
  (`ModuleSteps`: calls into a module agent); `context.py`: what every runner of a node shares.
- `executor.py`: one executor attempt as a subprocess; `modules.py`: loading module agents;
  `pools.py`: executor pools; `bundle_cache.py`: uploaded bundles materialised on this node.
"""
