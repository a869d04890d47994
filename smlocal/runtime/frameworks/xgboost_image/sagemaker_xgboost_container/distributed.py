"""Multi-host XGBoost training helpers of the XGBoost image (``distributed``).

``rabit_run`` first agrees across hosts on which of them have data (a first cluster of every host,
tracker port 9099), then runs the training function in a second cluster of only those hosts (port
9100): a host without data logs that it is not used and leaves with exit code 0, as the image's
does. In each cluster the first host in sorted order runs the tracker and is the master; ranks
follow the sorted host order (each worker's task id is its index, the tracker sorts by task), so
the master is rank 0 -- the rank XGBoost's evaluation monitor prints on. With one host the
function runs directly. Built on ``xgboost.collective`` and ``xgboost.tracker`` (the image's own
``xgboost.rabit`` is gone from current XGBoost).
"""

from __future__ import annotations

import logging
import socket
import sys
import time

from sagemaker_containers.entry_point import _dns_lookup  # the image depends on sagemaker-containers

LOCAL_HOSTNAME = "127.0.0.1"
DEFAULT_PORT = 9099


def wait_hostname_resolution(sm_hosts):
    """Blocks until every host name of the cluster resolves."""
    for host in sm_hosts:
        _dns_lookup(host)


def rabit_run(exec_fun, args, include_in_training, hosts, current_host, first_port=None, second_port=None,
              max_connect_attempts=None, connect_retry_timeout=3, update_rabit_args=False):
    """Runs ``exec_fun(**args)`` on every host that has data, in one XGBoost cluster.

    Args:
        exec_fun: The training function (it calls ``xgb.train``).
        args: Its keyword arguments; ``is_master`` is added with ``update_rabit_args``.
        include_in_training: Whether this host has data to train on.
        hosts, current_host: The job's hosts and this one.
        first_port, second_port: Tracker ports of the two rounds (9099 and the next by default).
        max_connect_attempts: Attempts to reach the tracker of each round (None: no limit).
        connect_retry_timeout: Seconds between those attempts.
        update_rabit_args: Add ``is_master`` to ``args``.

    Raises:
        RuntimeError: No host has training data.
        ValueError: ``max_connect_attempts`` is not None or a positive integer.
    """
    connect = {"max_connect_attempts": _checked_attempts(max_connect_attempts),
               "connect_retry_timeout": connect_retry_timeout}
    if len(hosts) == 1:  # a cluster of one: nothing to agree on
        hosts_with_data, previous_port = ([current_host] if include_in_training else []), DEFAULT_PORT
    else:
        with Rabit(hosts=hosts, current_host=current_host, port=first_port, **connect) as rabit:
            records = rabit.synchronize({"host": rabit.current_host, "include_in_training": include_in_training})
            hosts_with_data = [r["host"] for r in records if r["include_in_training"]]
            previous_port = rabit.master_port
    if not include_in_training:
        logging.warning("Host %s not being used for distributed training.", current_host)
        sys.exit(0)
    port = second_port if second_port else previous_port + 1
    if len(hosts_with_data) > 1:
        with Rabit(hosts=hosts_with_data, current_host=current_host, port=port, **connect) as cluster:
            if update_rabit_args:
                args.update({"is_master": cluster.is_master})
            exec_fun(**args)
    elif len(hosts_with_data) == 1:
        if update_rabit_args:
            args.update({"is_master": True})
        exec_fun(**args)
    else:
        raise RuntimeError("No hosts received training data.")


def _checked_attempts(max_connect_attempts):
    if max_connect_attempts is not None and max_connect_attempts <= 0:
        raise ValueError("max_connect_attempts must be None or an integer greater than 0.")
    return max_connect_attempts


class RabitHelper:
    """What a :class:`Rabit` context gives: ``is_master``, ``rank``, ``current_host``, ``master_port``."""

    def __init__(self, is_master, current_host, master_port):
        from xgboost import collective

        self.is_master = is_master
        self.rank = collective.get_rank()
        self.current_host = current_host
        self.master_port = master_port

    def synchronize(self, data):
        """Every host's ``data``, in rank order (each host broadcasts its own in turn)."""
        from xgboost import collective

        return [collective.broadcast(data if self.rank == i else None, i)
                for i in range(collective.get_world_size())]


class Rabit:
    """A context that joins this host to an XGBoost cluster of ``hosts`` (the first sorted host
    runs the tracker on ``port``) and leaves it on exit."""

    def __init__(self, hosts, current_host=None, master_host=None, port=None, max_connect_attempts=None,
                 connect_retry_timeout=3):
        """Raises ValueError when ``max_connect_attempts`` is neither None (no limit) nor above 0."""
        self.current_host = current_host or LOCAL_HOSTNAME
        self.logger = logging.getLogger("RabitContextManager")
        self.hosts = sorted(hosts)
        self.n_workers = len(self.hosts)
        self.master_host = master_host or self.hosts[0]
        self.is_master_host = self.current_host == self.master_host
        self.port = DEFAULT_PORT if port is None else port
        self.max_connect_attempts = _checked_attempts(max_connect_attempts)
        self.connect_retry_timeout = connect_retry_timeout
        self._tracker = None

    def start(self):
        """Starts the tracker (on the master), connects, initialises the communicator.

        Raises:
            Exception: The tracker cannot be reached ("Failed to connect to Rabit Tracker").
        """
        from xgboost import collective
        from xgboost.tracker import RabitTracker

        if self.n_workers == 1:  # a cluster of one needs no communicator
            return RabitHelper(True, self.current_host, self.port)
        if self.is_master_host:
            self._tracker = RabitTracker(n_workers=self.n_workers, host_ip=_dns_lookup(self.current_host),
                                         port=self.port, sortby="task")
            self._tracker.start()
        attempt = 0
        while not self._tracker_reachable():
            self.logger.info("Failed to connect to RabitTracker on attempt %s", attempt)
            attempt += 1
            if self.max_connect_attempts is not None and attempt >= self.max_connect_attempts:
                self.logger.error("Failed to connect to Rabit Tracker after %s attempts", self.max_connect_attempts)
                raise Exception("Failed to connect to Rabit Tracker")
            time.sleep(self.connect_retry_timeout)
        self.logger.info("Connected to RabitTracker.")
        # the task id orders the ranks (sortby="task"); zero-padded so that "10" sorts after "9"
        collective.init(dmlc_communicator="rabit", dmlc_tracker_uri=_dns_lookup(self.master_host),
                        dmlc_tracker_port=self.port, dmlc_task_id=f"{self.hosts.index(self.current_host):05d}")
        helper = RabitHelper(self.is_master_host, self.current_host, self.port)
        self.logger.info("%s joined the XGBoost cluster of %s hosts on port %s as rank %s (master: %s).",
                         self.current_host, self.n_workers, self.port, helper.rank, self.master_host)
        return helper

    def _tracker_reachable(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.connect((self.master_host, self.port))
            except OSError:
                return False
        return True

    def stop(self):
        """Leaves the cluster (the master waits for its tracker to finish)."""
        from xgboost import collective

        if self.n_workers > 1:
            collective.finalize()
        if self._tracker is not None:
            tracker, self._tracker = self._tracker, None
            try:
                tracker.wait_for()  # every worker has left
            finally:
                tracker.free()

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc_value, exc_traceback):
        self.stop()
