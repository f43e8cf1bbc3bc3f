"""Drop readings the flow has already counted, so QoS 1 redelivery cannot skew a window.

The sinks are idempotent, but an aggregate is not: a reading delivered twice
(an ingester killed between its Kafka write and its MQTT acknowledgement, a
broker restart) would add one to its window's count and move the mean. A
reading is the same one if its device and ``seq`` match, or, for a device that
sends no ``seq``, its device and event time. The record lives in compiled code
(``flows/native/src/seen.rs``) and goes into the recovery snapshot with the
rest of the partition, so a resumed flow still recognises what it counted.

Limits (by design, to keep 74 bytes per device): a duplicate is recognised up
to ``SEQ_WINDOW`` sequence numbers below the device's highest, and, without
``seq``, among the device's last ``TS_RING`` event times. An older repeat is
counted, never a reading dropped on a guess.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from flows._native import SeenIndex

SEQ_WINDOW: int = SeenIndex.SEQ_WINDOW
TS_RING: int = SeenIndex.TS_RING


class Seen:
    """Per-slot record of counted readings; picklable."""

    def __init__(self) -> None:
        self._index = SeenIndex()

    def duplicates(
        self, slots: npt.NDArray[np.int64], seqs: npt.NDArray[np.int64], ts: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        """True for each reading already counted (in this batch or before); records the rest."""
        flags = self._index.duplicates(
            np.ascontiguousarray(slots, np.int64),
            np.ascontiguousarray(seqs, np.int64),
            np.ascontiguousarray(ts, np.int64),
        )
        return np.frombuffer(flags, np.uint8).astype(np.bool_)

    def __getstate__(self) -> dict[str, Any]:
        return {"seen": self._index.to_bytes()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._index = SeenIndex.from_bytes(state["seen"])
