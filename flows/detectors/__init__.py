"""Anomaly detectors for every device at once: numpy over slots, no Bytewax, no I/O.

Detectors (names as they appear in ``Alert.detector``), one class each:
``threshold`` and ``out_of_range`` (``threshold.py``), ``ewma`` and
``rate_of_change`` (``statistical.py``), ``stuck`` (``stuck.py``), ``silence``
(``silence.py``). They share the alarm lifecycle (``lifecycle.py``), the
per-device baseline (``baseline.py``) and the bank that runs them over a
partition's micro-batches (``bank.py``). ``base.py`` says how to add one.
"""

from flows.detectors import registry, silence, statistical, stuck, threshold  # noqa: F401  (registers)
from flows.detectors.bank import DetectorBank, DetectorSnapshot, DetectorStats
from flows.detectors.base import Detector, Round
from flows.detectors.config import (
    DETECTORS,
    EWMA,
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
from flows.detectors.silence import GAP_CAP

assert registry.names()[: len(DETECTORS)] == DETECTORS, "built-ins register in DETECTORS order"

__all__ = [
    "DETECTORS",
    "EWMA",
    "GAP_CAP",
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
    "Round",
    "TypeParams",
    "make_alert",
    "register",
]
