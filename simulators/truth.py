"""Ground truth as JSON lines, so ``bench/`` can score detectors against it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import BinaryIO

import msgspec

from iotpipe.errors import ConfigError
from simulators.anomalies import Label, RawLabel
from simulators.names import Naming

FLEET_WIDE = -1  # device index of labels that concern no single device (storms)
_encoder = msgspec.json.Encoder()


class TruthWriter:
    """Names raw labels and appends them to a file (or only counts them)."""

    def __init__(self, path: Path | None, naming: Naming) -> None:
        self.path = path
        self.naming = naming
        self.counts: Counter[str] = Counter()
        self._fh: BinaryIO | None = None
        if path is not None:
            try:
                self._fh = path.open("wb")
            except OSError as exc:
                raise ConfigError(f"ground-truth file {path}: {exc.strerror or exc}") from exc

    def name(self, raw: RawLabel, stype: int, site: int) -> Label:
        wide = raw.device == FLEET_WIDE
        return Label(
            device_id="*" if wide else self.naming.device_id(raw.device),
            sensor_type="*" if wide else self.naming.types[stype],
            site="*" if wide else self.naming.sites[site],
            category=raw.category,
            kind=raw.kind,
            start_ts=raw.start_ts,
            end_ts=raw.end_ts,
            readings=raw.readings,
            detail=raw.detail,
            truncated=raw.truncated,
        )

    def write(self, labels: list[Label]) -> None:
        for label in labels:
            self.counts[label.kind] += 1
        if self._fh is not None and labels:
            self._fh.write(b"".join(_encoder.encode(lab) + b"\n" for lab in labels))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_truth(path: Path) -> list[Label]:
    """Labels back from a ground-truth file."""
    decoder = msgspec.json.Decoder(Label)
    return [decoder.decode(line) for line in path.read_bytes().splitlines() if line.strip()]
