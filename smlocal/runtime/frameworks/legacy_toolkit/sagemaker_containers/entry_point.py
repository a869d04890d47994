"""``sagemaker_containers.entry_point``: only its host-name resolution helpers.

The toolkit's module runs the user entry point (``run``, ``install``): that is the container's own
machinery, which smlocal does itself, so it is not offered. What scripts and the XGBoost image's
``sagemaker_xgboost_container.distributed`` use are the module's private helpers
``_dns_lookup`` and ``_wait_hostname_resolution`` (a multi-host job waits for its cluster).
"""

from __future__ import annotations

import socket
import time

from sagemaker_containers import _env

_MAX_WAIT_SECONDS = 15 * 60  # the toolkit retries each look-up for up to 15 minutes
_FIRST_DELAY, _MAX_DELAY = 0.2, 30.0


def _dns_lookup(host):
    """The address of ``host``, retrying with exponential back-off for up to 15 minutes."""
    deadline = time.monotonic() + _MAX_WAIT_SECONDS
    delay = _FIRST_DELAY
    while True:
        try:
            return socket.gethostbyname(host)
        except OSError:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)


def _wait_hostname_resolution():
    """Blocks until every host of the job resolves (SageMaker's documented cluster start-up)."""
    for host in _env.TrainingEnv().hosts:
        _dns_lookup(host)
