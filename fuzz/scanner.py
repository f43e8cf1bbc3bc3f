"""Fuzz target: the flow's compiled reading scanner against msgspec (differential).

``flows.slots.SlotMap.decode`` reads Kafka values in the ingester's layout in
compiled code (``flows/native/src/scan.rs``) and leaves anything else to
msgspec (``Columns.pending``). It may leave whatever it likes, but what it
accepts it must read exactly as ``iotpipe.codec.decode_reading`` reads it. One
fuzz input is one Kafka value; for each:

* the columns have one row; ``pending`` is ``[]`` or ``[0]``; a pending row is
  ``ts 0, value 0.0, slot -1, seq -1`` and registers no device;
* when the compiled path accepts it, msgspec accepts it too, and they agree on
  ``ts``, ``value`` (bit for bit: ``-0.0`` is not ``0.0``), ``seq`` (-1 is None),
  the device id (``SlotMap.device_ids[slot]``), and, as the map starts empty for
  every input, the device's sensor type (one the map serves) and site;
* decoding the same value again (the device now known) gives the same row and
  registers nothing new.

The compiled code is not instrumented, so coverage comes from the Python side
only; the seeds (``encode(Reading(...))``, so mutations start on the fast path)
and the dictionary ``fuzz/scanner.dict`` do most of the steering.

Run (see ``fuzz/README.md``)::

    .venv/bin/python fuzz/scanner.py -dict=fuzz/scanner.dict fuzz/corpus/scanner
"""

from __future__ import annotations

import importlib.util
import os
import struct
import sys

import atheris
import msgspec


def load_instrumented_native(path: str) -> None:
    """Use a coverage-instrumented build of flows/native (``fuzz/build_native.sh``).

    Its coverage callbacks are libFuzzer's, inside atheris's built-in copy:
    that is loaded first with RTLD_GLOBAL so the extension's symbols resolve
    to it, and the build is then imported as ``flows._native``.
    """
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_GLOBAL)
    import atheris.core_with_libfuzzer  # noqa: F401

    sys.setdlopenflags(flags)
    spec = importlib.util.spec_from_file_location("flows._native", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["flows._native"] = module


NATIVE = os.environ.get("IOTPIPE_FUZZ_NATIVE")
if NATIVE:
    load_instrumented_native(NATIVE)

with atheris.instrument_imports(include=["iotpipe", "flows"]):
    from flows.slots import Columns, SlotMap
    from iotpipe.catalogue import load_catalogue
    from iotpipe.codec import decode_reading
    from iotpipe.model import Reading

TYPES = sorted(load_catalogue().names)


def bits(value: float) -> str:
    return struct.pack("<d", value).hex()


def row(cols: Columns) -> tuple[int, str, int, int]:
    for name in ("ts", "value", "slot", "seq"):
        column = getattr(cols, name)
        assert len(column) == 1, f"{name} has {len(column)} rows for one value"
    return int(cols.ts[0]), bits(float(cols.value[0])), int(cols.slot[0]), int(cols.seq[0])


def msgspec_verdict(data: bytes) -> Reading | str:
    try:
        return decode_reading(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return str(exc)


@atheris.instrument_func
def test_one_input(data: bytes) -> None:
    slots = SlotMap(TYPES)
    cols = slots.decode([data])
    ts, value_bits, slot, seq = row(cols)
    assert cols.pending in ([], [0]), f"pending {cols.pending!r} for one value"
    if cols.pending:
        assert (ts, value_bits, slot, seq) == (0, bits(0.0), -1, -1), (
            f"pending row is {(ts, value_bits, slot, seq)}"
        )
        assert len(slots) == 0, f"a pending value registered {slots.device_ids!r}"
        return

    verdict = msgspec_verdict(data)
    assert isinstance(verdict, Reading), (
        f"compiled path accepted {data!r}, msgspec refuses it: {verdict}"
    )
    assert len(slots) == 1 and slot == 0, f"slot {slot} of {slots.device_ids!r} for {data!r}"
    got = {
        "ts": ts,
        "value": value_bits,
        "seq": seq,
        "device_id": slots.device_ids[slot],
        "sensor_type": slots.type_names[int(slots.slot_type[slot])],
        "site": slots.site_names[int(slots.slot_site[slot])],
    }
    want = {
        "ts": verdict.ts,
        "value": bits(verdict.value),
        "seq": -1 if verdict.seq is None else verdict.seq,
        "device_id": verdict.device_id,
        "sensor_type": verdict.sensor_type,
        "site": verdict.site,
    }
    diff = {k: (got[k], want[k]) for k in got if got[k] != want[k]}
    assert not diff, f"compiled path and msgspec disagree on {data!r}: (compiled, msgspec) {diff}"

    again = slots.decode([data])
    assert not again.pending and row(again) == (ts, value_bits, slot, seq), (
        f"second decode of {data!r} (device known) gave {row(again)}, pending {again.pending}"
    )
    assert len(slots) == 1, f"second decode registered again: {slots.device_ids!r}"


def main() -> None:
    # With the instrumented build, libFuzzer's symbols are global: atheris
    # would take them for a preloaded libFuzzer unless told to use its own.
    # (internal_libfuzzer=None is not "auto": it would disable the built-in one.)
    options = {"internal_libfuzzer": True} if NATIVE else {}
    atheris.Setup(sys.argv, test_one_input, **options)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
