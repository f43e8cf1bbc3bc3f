"""Anomaly detectors for every device at once: numpy over slots, no Bytewax, no I/O.

Detectors (names as they appear in ``Alert.detector``), one class each:
``threshold`` and ``out_of_range`` (``threshold.py``), ``ewma`` and
``rate_of_change`` (``statistical.py``), ``stuck`` (``stuck.py``), ``silence``
(``silence.py``), and ``flapping`` (``flapping.py``: the per-device alert
budget). They share the alarm lifecycle (``lifecycle.py``), the per-device
baseline (``baseline.py``) and the bank that runs them over a partition's
micro-batches (``bank.py``). ``base.py`` says how to add one.
"""

from flows.detectors import (  # noqa: F401  (registers)
    flapping,
    registry,
    silence,
    statistical,
    stuck,
    threshold,
)
from flows.detectors.bank import DetectorBank, DetectorSnapshot, DetectorStats
from flows.detectors.base import Detector, Known, Round
from flows.detectors.baseline import GAP_CAP
from flows.detectors.config import (
    DETECTORS,
    EWMA,
    FLAPPING,
    HOUR_MS,
    NO_TS,
    OUT_OF_RANGE,
    RATE,
    SEVERITIES,
    SILENCE,
    SQRT2,
    STATES,
    STUCK,
    THRESHOLD,
    DetectorConfig,
    TypeParams,
)
from flows.detectors.lifecycle import Events, make_alert
from flows.detectors.registry import register

assert registry.names()[: len(DETECTORS)] == DETECTORS, "built-ins register in DETECTORS order"

__all__ = [
    "DETECTORS",
    "EWMA",
    "FLAPPING",
    "GAP_CAP",
    "HOUR_MS",
    "NO_TS",
    "OUT_OF_RANGE",
    "RATE",
    "SEVERITIES",
    "SILENCE",
    "SQRT2",
    "STATES",
    "STUCK",
    "THRESHOLD",
    "Detector",
    "DetectorBank",
    "DetectorConfig",
    "DetectorSnapshot",
    "DetectorStats",
    "Events",
    "Known",
    "Round",
    "TypeParams",
    "make_alert",
    "register",
]
