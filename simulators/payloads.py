"""Reading payloads as JSON, built for a whole batch at once with numpy.

Why not ``msgspec.json.encode`` per reading: building one Python object per
reading caps generation well under a million readings/s. Instead every record
is a row of a ``uint8`` matrix: a template with the constant text, into which
the variable parts are written column-wise (digits through a 3-digit lookup
table, names through small padded tables). Unused cells hold byte 0, and one
boolean compress drops them, giving newline-separated JSON objects in one
``bytes``. Values are written with 3 decimals (trailing zeros trimmed), the
same text ``msgspec`` would produce after rounding, and must be finite.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from iotpipe.catalogue import Catalogue
from simulators.fleet import Batch
from simulators.names import Naming

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

_DIGITS3 = np.array([list(f"{i:03d}".encode()) for i in range(1000)], np.uint8)
_TS_DIGITS = 13  # epoch ms from 2001 to 2286
_SEQ_DIGITS = 10
_INT_DIGITS = 10  # |value| < 1e10
_VALUE_LIMIT = 10.0**_INT_DIGITS - 0.001
_POW10 = 10 ** np.arange(1, 19, dtype=np.int64)


def _table(names: list[str]) -> U8:
    """Names as rows of a byte matrix padded with 0 (dropped when compacting)."""
    width = max(len(n.encode()) for n in names)
    out = np.zeros((len(names), width), np.uint8)
    for i, n in enumerate(names):
        raw = n.encode()
        out[i, : len(raw)] = np.frombuffer(raw, np.uint8)
    return out


def _digits(x: I64, width: int) -> U8:
    """Zero-padded decimal digits of non-negative ints, ``width`` columns."""
    groups = -(-width // 3)
    out = np.empty((x.size, groups * 3), np.uint8)
    rest = x
    for g in range(groups - 1, -1, -1):
        if g:
            rest, low = np.divmod(rest, 1000)
        else:
            low = rest % 1000
        out[:, g * 3 : g * 3 + 3] = _DIGITS3[low]
    return out[:, groups * 3 - width :]


def _ts_digits(ts: I64) -> U8:
    """13 digits of epoch-ms; the high 7 are shared by most of a batch, so done once each."""
    high, low = np.divmod(ts, 1_000_000)
    out = np.empty((ts.size, _TS_DIGITS), np.uint8)
    uniq, inverse = np.unique(high, return_inverse=True)
    out[:, :7] = _digits(uniq, 7)[inverse]
    out[:, 7:10] = _DIGITS3[low // 1000]
    out[:, 10:] = _DIGITS3[low % 1000]
    return out


def _width(x: I64) -> int:
    """Decimal digits of the largest value (at least 1)."""
    top = int(x.max()) if x.size else 0
    return len(str(max(top, 0)))


def _strip_leading_zeros(cols: U8, x: I64) -> None:
    """Blank the leading zeros of ``x`` in its digit columns (one digit always stays)."""
    width = cols.shape[1]
    ndig = np.searchsorted(_POW10, x, side="right") + 1
    cols[np.arange(width) < (width - ndig)[:, None]] = 0


class PayloadEncoder:
    """Turns a ``Batch`` into JSON reading objects (``Reading`` field names)."""

    def __init__(self, naming: Naming, catalogue: Catalogue, *, with_unit: bool = False) -> None:
        self.naming = naming
        prefix = f"{naming.device_prefix}-".encode()
        self._id_digits = naming.digits
        self._types = _table(list(naming.types))
        self._sites = _table(list(naming.sites))
        self._units = _table([catalogue[t].unit for t in naming.types]) if with_unit else None
        parts: list[tuple[str, bytes | int]] = [
            ("c", b'{"device_id":"' + prefix),
            ("id", self._id_digits),
            ("c", b'","sensor_type":"'),
            ("type", self._types.shape[1]),
            ("c", b'","site":"'),
            ("site", self._sites.shape[1]),
            ("c", b'","ts":'),
            ("ts", _TS_DIGITS),
            ("c", b',"value":'),
            ("value", 1 + _INT_DIGITS + 4),
            ("c", b',"seq":'),
            ("seq", _SEQ_DIGITS),
        ]
        if self._units is not None:
            parts += [("c", b',"unit":"'), ("unit", self._units.shape[1]), ("c", b'"')]
        parts.append(("c", b"}\n"))
        template: list[int] = []
        self._at: dict[str, int] = {}
        for name, spec in parts:
            if isinstance(spec, bytes):
                template += list(spec)
            else:
                self._at[name] = len(template)
                template += [0] * spec
        self._template = np.array(template, np.uint8)

    @property
    def max_record_bytes(self) -> int:
        return int(self._template.size)

    def lines(
        self, batch: Batch, stype: npt.NDArray[np.integer], site: npt.NDArray[np.integer]
    ) -> bytes:
        """Newline-terminated JSON objects, one per reading, in batch order."""
        n = len(batch)
        if n == 0:
            return b""
        m = np.empty((n, self._template.size), np.uint8)
        m[:] = self._template
        at = self._at
        m[:, at["id"] : at["id"] + self._id_digits] = _digits(batch.device, self._id_digits)
        m[:, at["type"] : at["type"] + self._types.shape[1]] = self._types[stype]
        m[:, at["site"] : at["site"] + self._sites.shape[1]] = self._sites[site]
        m[:, at["ts"] : at["ts"] + _TS_DIGITS] = _ts_digits(np.maximum(batch.ts, 0))
        seq = np.minimum(batch.seq, 10**_SEQ_DIGITS - 1)
        width = _width(seq)
        seq_cols = _digits(seq, width)
        if width > 1:
            _strip_leading_zeros(seq_cols, seq)
        m[:, at["seq"] : at["seq"] + _SEQ_DIGITS - width] = 0
        m[:, at["seq"] + _SEQ_DIGITS - width : at["seq"] + _SEQ_DIGITS] = seq_cols
        self._write_values(m[:, at["value"] : at["value"] + 1 + _INT_DIGITS + 4], batch.value)
        if self._units is not None:
            m[:, at["unit"] : at["unit"] + self._units.shape[1]] = self._units[stype]
        flat = m.ravel()
        blob: bytes = flat[flat != 0].tobytes()
        return blob

    def messages(
        self, batch: Batch, stype: npt.NDArray[np.integer], site: npt.NDArray[np.integer]
    ) -> list[bytes]:
        """One JSON object (bytes, no newline) per reading."""
        blob = self.lines(batch, stype, site)
        return blob.split(b"\n")[:-1] if blob else []

    @staticmethod
    def _write_values(out: U8, value: npt.NDArray[np.float64]) -> None:
        """``-123.456`` style text: sign, integer digits, then up to 3 decimals."""
        v = np.clip(value, -_VALUE_LIMIT, _VALUE_LIMIT)
        milli = np.rint(np.abs(v) * 1000.0).astype(np.int64)
        whole, frac = np.divmod(milli, 1000)
        out[:] = 0
        negative = (v < 0) & (milli > 0)
        width = _width(whole)
        int_cols = _digits(whole, width)
        if width > 1:
            _strip_leading_zeros(int_cols, whole)
        out[:, 1 + _INT_DIGITS - width : 1 + _INT_DIGITS] = int_cols
        if negative.any():
            out[negative, 0] = ord("-")
        has_frac = frac > 0
        dot = 1 + _INT_DIGITS
        out[:, dot][has_frac] = ord(".")
        out[:, dot + 1 : dot + 4] = _DIGITS3[frac]
        # trailing zeros: 1.500 -> 1.5, 2.000 -> 2
        out[:, dot + 3][frac % 10 == 0] = 0
        out[:, dot + 2][frac % 100 == 0] = 0
        out[:, dot + 1][~has_frac] = 0

    @staticmethod
    def value_text(value: npt.NDArray[np.float64]) -> list[bytes]:
        """The text each value gets in a payload (for tests and debugging)."""
        out = np.zeros((value.size, 1 + _INT_DIGITS + 4), np.uint8)
        PayloadEncoder._write_values(out, value)
        return [row[row != 0].tobytes() for row in out]
