"""Job output as CloudWatch takes it: events and batches within the limits, server memory bounded.

Real training jobs through boto3 against the emulator, and the real log writer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import script_job, unique, upload_sourcedir, wait_for
from smlocal.runtime.logs import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, LogStreamWriter

pytestmark = pytest.mark.slow
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def _stream_events(logs, name: str) -> list[dict]:
    streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/")["logStreams"]
    assert len(streams) == 1
    events, token = [], None
    while True:
        kwargs = {"nextToken": token} if token else {}
        page = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=streams[0]["logStreamName"],
                                   startFromHead=True, **kwargs)
        events += page["events"]
        if not page["events"] or page["nextForwardToken"] == token:
            return events
        token = page["nextForwardToken"]


def test_a_one_megabyte_line_becomes_several_events_within_the_cap(sm, s3, bucket, emulator):
    code = upload_sourcedir(s3, bucket, {"train.py": (
        "import sys\n"
        "line = ''.join(chr(0x41 + i % 26) if i % 7 else '\\u00e9' for i in range(700_000))\n"
        "open('/opt/ml/model/line.txt', 'w').write(line)\n"
        "print('before'); print(line); print('after')\n"
    )})
    name = unique("bigline")
    sm.create_training_job(**script_job(name, bucket, code))
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    expected = "".join(chr(0x41 + i % 26) if i % 7 else "\u00e9" for i in range(700_000))
    assert len(expected.encode()) > 780_000
    messages = [e["message"] for e in _stream_events(emulator.client("logs"), name)]
    start, end = messages.index("before"), messages.index("after")
    pieces = messages[start + 1:end]
    assert len(pieces) >= 3 and all(len(p.encode()) <= MAX_EVENT_BYTES for p in pieces)
    assert "".join(pieces) == expected


def test_a_megabyte_line_written_directly_is_split_at_character_boundaries(emulator):
    logs = emulator.client("logs")
    stream = unique("direct")
    line = ("a" * 262_117 + "\u00e9") * 4  # each cut falls inside a two-byte character
    writer = LogStreamWriter(logs, "/smlocal/test/logs", stream)
    writer.write(line)
    writer.close()
    events = logs.get_log_events(logGroupName="/smlocal/test/logs", logStreamName=stream,
                                 startFromHead=True)["events"]
    assert len(line.encode()) > 1_048_000 and len(events) >= 4
    assert all(len(e["message"].encode()) <= MAX_EVENT_BYTES for e in events)
    assert "".join(e["message"] for e in events) == line


class _Batches:
    """A journal (the writer's documented hook) that keeps what each batch held."""

    def __init__(self):
        self.batches: list[list[dict]] = []

    def append(self, group: str, stream: str, events: list[dict]) -> None:
        self.batches.append(list(events))


def test_twenty_thousand_lines_go_in_batches_within_the_limits(emulator):
    logs = emulator.client("logs")
    stream = unique("batches")
    journal = _Batches()
    writer = LogStreamWriter(logs, "/smlocal/test/logs", stream, flush_seconds=30, journal=journal)
    for i in range(20_000):
        writer.write(f"line {i}")
    for _ in range(6):
        writer.write("x" * 200_000)
    writer.close()
    assert sum(len(b) for b in journal.batches) == 20_006
    for batch in journal.batches:
        assert len(batch) <= MAX_BATCH_EVENTS
        assert sum(len(e["message"].encode()) + 26 for e in batch) <= MAX_BATCH_BYTES
        stamps = [e["timestamp"] for e in batch]
        assert stamps == sorted(stamps)
    events, token = [], None
    while True:
        page = logs.get_log_events(logGroupName="/smlocal/test/logs", logStreamName=stream, startFromHead=True,
                                   **({"nextToken": token} if token else {}))
        events += page["events"]
        if not page["events"]:
            break
        token = page["nextForwardToken"]
    assert len(events) == 20_006
    assert [e["message"] for e in events[:20_000:4_999]] == [f"line {i}" for i in range(0, 20_000, 4_999)]


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_a_job_printing_100_megabytes_keeps_server_memory_bounded(sm, s3, bucket):
    warm = upload_sourcedir(s3, bucket, {"train.py": "print('warm')\n"})
    name = unique("warm")
    sm.create_training_job(**script_job(name, bucket, warm))  # moto's first Logs call costs ~200 MB, once
    assert wait_for(sm, name)["TrainingJobStatus"] == "Completed"
    code = upload_sourcedir(s3, bucket, {"train.py": (
        "import sys\n"
        "block = ('y' * 1023 + '\\n') * 1024\n"
        "for _ in range(50):\n"
        "    sys.stdout.write(block)\n"  # 50 MB of 1 KB lines
        "sys.stdout.write('z' * 50 * 1024 * 1024 + '\\n')\n"  # and one 50 MB line
    )})
    name = unique("loud")
    before = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    sm.create_training_job(**script_job(name, bucket, code))
    job = wait_for(sm, name, timeout=300)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    growth_mib = (_rss_kib("VmHWM") - before) / 1024
    # moto keeps every event in memory, as CloudWatch stores them: the 100 MiB of text, plus at most 100 MiB
    assert growth_mib < 200, growth_mib
