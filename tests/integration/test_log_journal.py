"""The CloudWatch Logs journal: what a durable server appends is put back into moto at the next start."""

from __future__ import annotations

import json
import time

from conftest import unique
from smlocal.runtime.log_journal import LogJournal
from smlocal.runtime.logs import LogStreamWriter


def _events(logs, group: str, stream: str) -> list[tuple[int, str]]:
    events = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    return [(e["timestamp"], e["message"]) for e in events]


def test_replay_recreates_groups_streams_and_events_in_order(emulator, tmp_path):
    logs = emulator.client("logs")
    group, now = f"/aws/sagemaker/{unique('J')}", int(time.time() * 1000)
    journal = LogJournal(tmp_path / "logs")
    journal.append(group, "job/algo-1", [{"timestamp": now, "message": "one"}, {"timestamp": now, "message": "two"}])
    journal.append(group, "job/algo-2", [{"timestamp": now + 1, "message": "other"}])
    journal.append(group, "job/algo-1", [{"timestamp": now + 2, "message": "three"}])
    journal.close()
    with open(journal.files()[-1], "ab") as out:  # a line cut short by a crash
        out.write(b'{"group": "' + group.encode() + b'", "stream": "job/algo-1", "ev')
    logs.create_log_group(logGroupName=group)  # already there: used as it is
    assert LogJournal(tmp_path / "logs").replay(logs) == 4
    assert _events(logs, group, "job/algo-1") == [(now, "one"), (now, "two"), (now + 2, "three")]
    assert _events(logs, group, "job/algo-2") == [(now + 1, "other")]


def test_the_writer_journals_each_batch_it_sent(emulator, tmp_path):
    logs = emulator.client("logs")
    group = f"/aws/sagemaker/{unique('W')}"
    journal = LogJournal(tmp_path / "logs")
    writer = LogStreamWriter(logs, group, "job/algo-1", journal=journal)
    for i in range(3):
        writer.write(f"line {i}")
    writer.close()
    recorded = [(g, s, [e["message"] for e in events]) for g, s, events in journal.batches()]
    assert recorded == [(group, "job/algo-1", ["line 0", "line 1", "line 2"])]


def test_files_rotate_and_the_oldest_go_beyond_the_cap(tmp_path):
    journal = LogJournal(tmp_path, max_file_bytes=400, max_files=3)
    now = int(time.time() * 1000)
    for i in range(40):
        journal.append("g", "s", [{"timestamp": now + i, "message": f"message number {i:03d}"}])
    journal.close()
    files = journal.files()
    assert len(files) == 3 and all(f.stat().st_size <= 400 for f in files)
    kept = [e["message"] for _, _, events in journal.batches() for e in events]
    assert kept == [f"message number {i:03d}" for i in range(40 - len(kept), 40)]  # the newest, in order
    reopened = LogJournal(tmp_path, max_file_bytes=400, max_files=3)  # a restart goes on where it stopped
    reopened.append("g", "s", [{"timestamp": now + 99, "message": "after restart"}])
    assert json.loads(reopened.files()[-1].read_text().splitlines()[-1])["events"][0]["message"] == "after restart"
    reopened.clear()
    assert reopened.files() == []


def test_a_batch_written_after_a_torn_line_is_kept(emulator, tmp_path):
    """A kill -9 (or a full disk) mid-write leaves a line without its newline; the next server goes on
    with that file, and its first batch used to be glued to the torn line and skipped with it."""
    logs = emulator.client("logs")
    group, now = f"/aws/sagemaker/{unique('T')}", int(time.time() * 1000)
    journal = LogJournal(tmp_path / "logs")
    journal.append(group, "s", [{"timestamp": now, "message": "before"}])
    journal.close()
    with open(journal.files()[-1], "ab") as out:
        out.write(b'{"group": "' + group.encode() + b'", "stream": "s", "events": [{"timesta')
    after = LogJournal(tmp_path / "logs")  # the next server
    after.append(group, "s", [{"timestamp": now + 1, "message": "after the crash"}])
    after.close()
    assert LogJournal(tmp_path / "logs").replay(logs) == 2
    assert _events(logs, group, "s") == [(now, "before"), (now + 1, "after the crash")]


def test_lines_of_the_wrong_shape_are_skipped_and_the_rest_replayed(emulator, tmp_path):
    """One corrupted line (valid JSON, wrong types; a name CloudWatch refuses) used to stop the server's
    start (replay raised), so `smlocal up --data-dir D` could not start on that data dir again."""
    logs = emulator.client("logs")
    group, now = f"/aws/sagemaker/{unique('C')}", int(time.time() * 1000)
    folder = tmp_path / "logs"
    folder.mkdir()
    good = {"group": group, "stream": "s", "events": [{"timestamp": now, "message": "kept"}]}
    bad = [{"group": group, "stream": "s", "events": [1, "x"]},
           {"group": group, "stream": "s", "events": [{"timestamp": "soon", "message": "m"}]},
           {"group": group, "stream": "s", "events": [{"timestamp": now, "message": 5}]},
           {"group": group, "stream": "s", "events": {"timestamp": now}},
           {"group": "", "stream": "s", "events": [{"timestamp": now, "message": "m"}]},
           {"group": "x" * 600, "stream": "s", "events": [{"timestamp": now, "message": "m"}]},
           ["not", "an", "object"]]
    lines = [json.dumps(item) for item in bad] + [json.dumps(good)]
    (folder / "journal-000001.jsonl").write_text("\n".join(lines) + "\n")
    assert LogJournal(folder).replay(logs) == 1
    assert _events(logs, group, "s") == [(now, "kept")]

