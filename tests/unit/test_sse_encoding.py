"""SSE framing and the encode-once cache used for fan-out."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from callboard.jobs import EventType, Job, JobEvent, JobStatus, NodeEvent, Progress
from callboard.web.sse import EventEncoder, encode_event, frame

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def job_event(event_id: int) -> JobEvent:
    job = Job(
        id="j1", company_id="c1", job_type="noop", status=JobStatus.RUNNING, priority=0,
        input={"a": "line\nbreak"}, progress=Progress(40, "half"), attempt=1, max_attempts=1,
        timeout_seconds=None, run_at=NOW, result_asset_id=None, error_message=None,
        source_task_id=None, idempotency_key=None, created_at=NOW, started_at=NOW,
        finished_at=None, updated_at=NOW,
    )  # fmt: skip
    return JobEvent(event_id, EventType.PROGRESS, "j1", "c1", NOW, job)


def test_frames_follow_the_event_stream_format():
    assert frame({"x": 1}, event="e", id=7, retry=3000) == (
        b'retry: 3000\nid: 7\nevent: e\ndata: {"x":1}\n\n'
    )
    encoded = encode_event(job_event(5)).decode()
    lines = encoded.split("\n")
    assert lines[:2] == ["id: 5", "event: content_job.progress"]
    data = json.loads(lines[2].removeprefix("data: "))
    assert data["job"]["input"] == {"a": "line\nbreak"}  # newlines stay escaped in one line
    assert encoded.endswith("\n\n") and encoded.count("\n\n") == 1
    node = encode_event(NodeEvent("worker.idle", {"worker": "w1"})).decode()
    assert not node.startswith("id:") and "event: worker.idle" in node


def test_each_job_event_is_encoded_once_and_the_cache_is_bounded():
    encode = EventEncoder(size=2)
    first = encode(job_event(1))
    assert encode(job_event(1)) is first  # served from the cache, not re-serialised
    encode(job_event(2))
    encode(job_event(3))
    assert encode(job_event(1)) is not first  # evicted, encoded again (same bytes)
    assert encode(job_event(1)) == first
    stats = NodeEvent("runtime.stats", {"n": 1})
    assert encode(stats) == encode_event(stats)
