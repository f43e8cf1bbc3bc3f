"""The ``iotpipe`` command line (``python -m ops`` is the same).

Every option can also be set through the environment variable shown in
``--help``. Known errors print ``Error: ...`` and exit 1, never a traceback.
The commands live in this package's modules; importing them registers them.
"""

from __future__ import annotations

import faulthandler
import signal

from ops.cli import admin, devices, dlq, run
from ops.cli.common import app

__all__ = ["admin", "app", "devices", "dlq", "main", "run"]


def main() -> None:
    # `kill -USR1 <pid>` prints every thread's stack to stderr: how to see where a
    # process that will not stop is waiting, without stopping it.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    app()
