"""`app.wire` against the domain: the API's job record is the job projection's fields as JSON."""

from __future__ import annotations

from dataclasses import fields

import msgspec

from app.audit import JOB_FIELDS
from app.domain.projection import JobView
from app.wire import JobRecord
from tests.unit.test_decide import given, submitted


def test_every_job_record_field_is_a_job_view_field() -> None:
    assert set(JobRecord.__struct_fields__) <= {f.name for f in fields(JobView)}
    assert JobRecord.__struct_fields__ == JOB_FIELDS


def test_a_folded_job_converts_to_the_wire_job_record() -> None:
    job = given([submitted()]).job
    record = msgspec.convert({name: getattr(job, name) for name in JobRecord.__struct_fields__}, JobRecord)
    assert (record.job_id, record.status, record.root_agent_ids) == (job.job_id, job.status, list(job.root_agent_ids))
    assert record.bundle is not None and record.bundle.bundle_id == "flow_v1"
