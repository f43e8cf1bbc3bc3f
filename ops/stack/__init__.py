"""The local service stack: Mosquitto, Kafka (KRaft) and InfluxDB, run natively.

All state lives under one directory (``IOTPIPE_STATE_DIR``). ``up`` is
idempotent and reuses a healthy server it did not start (shown as
``external``); ``down`` only stops what it started.
"""

from __future__ import annotations

from ops.stack.base import Status
from ops.stack.manager import Stack

__all__ = ["Stack", "Status"]
