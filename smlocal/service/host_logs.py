"""A job's CloudWatch log: one stream per host, ``<job>/algo-N-<epoch>``, as SageMaker writes them."""

from __future__ import annotations

import threading

from smlocal.runtime.job import log_stream_name
from smlocal.runtime.logs import LogJournal, LogStreamWriter


class HostLogStreams:
    """The log streams of one job's hosts, each opened when its host first logs (or by :meth:`open`).

    Args:
        logs_client: A boto3 CloudWatch Logs client.
        group: The job kind's log group (``/aws/sagemaker/TrainingJobs`` ...).
        job_name: The job's name (the streams' prefix).
        journal: Optional; handed to every stream's :class:`LogStreamWriter`.
    """

    def __init__(self, logs_client, group: str, job_name: str, journal: LogJournal | None = None):
        self._client = logs_client
        self._group = group
        self._job_name = job_name
        self._journal = journal
        self._writers: dict[str, LogStreamWriter] = {}
        self._lock = threading.Lock()

    def open(self, host: str) -> LogStreamWriter:
        """``host``'s stream writer, made (and the stream created) on first use."""
        with self._lock:
            writer = self._writers.get(host)
            if writer is None:
                writer = self._writers[host] = LogStreamWriter(
                    self._client, self._group, log_stream_name(self._job_name, host), journal=self._journal)
            return writer

    def write(self, host: str, line: str) -> None:
        """Queues one line on ``host``'s stream."""
        self.open(host).write(line)

    def close(self) -> None:
        """Flushes and closes every stream opened so far."""
        with self._lock:
            writers, self._writers = list(self._writers.values()), {}
        for writer in writers:
            writer.close()
