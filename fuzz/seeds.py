"""Writes the seed corpora ``fuzz/corpus/decoder/`` and ``fuzz/corpus/scanner/``.

The committed seeds are this script's output; rerun it after changing it
(``.venv/bin/python fuzz/seeds.py``). Files the fuzzer adds when run on the
committed directory are not seeds: run it on a copy (as the test does), or
delete them before committing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from iotpipe.codec import encode
from iotpipe.model import Reading

CORPUS = Path(__file__).resolve().parent / "corpus"
NOW_MS = 1_764_400_000_000  # fuzz/decoder.py's fixed clock
TS = NOW_MS - 60_000
ISO = "2025-11-29T07:05:40+00:00"  # TS as ISO-8601
FULL = "sensors/plant-a/temperature/dev-000042"


def obj(**fields: object) -> bytes:
    base: dict[str, object] = {"ts": TS, "value": 21.5}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


def full(**fields: object) -> bytes:
    base: dict[str, object] = {
        "device_id": "dev-000042",
        "sensor_type": "temperature",
        "site": "plant-a",
    }
    base.update(fields)
    return obj(**base)


def decoder_seeds() -> dict[str, bytes]:
    """name -> input (``topic NUL payload``, or a payload alone)."""
    nul = b"\0"
    t = FULL.encode() + nul
    return {
        "full-topic": t + obj(),
        "full-topic-seq-unit": t + obj(seq=7, unit="celsius"),
        "site-topic": b"sensors/plant-a" + nul + obj(device_id="d1", sensor_type="humidity"),
        "type-topic": b"sensors/plant-a/co2" + nul + obj(device_id="d1", value=415),
        "no-topic": full(),
        "no-topic-default-site": full(site=None, sensor_type="pressure", value=1013.25),
        "iso-ts": t + obj(ts=ISO),
        "iso-ts-zulu": full(ts="2025-11-29T07:05:40.125Z"),
        "iso-ts-naive": full(ts="2025-11-29T07:05:40"),
        "batch": b"sensors/plant-a"
        + nul
        + b"["
        + b",".join(
            [
                obj(device_id="d1", sensor_type="gas", seq=1),
                obj(device_id="d2", sensor_type="power", value=-3e-7),
                obj(device_id="bad id", sensor_type="power"),
            ]
        )
        + b"]",
        "batch-mixed": b'[1,"x",null,{},' + full(seq=0) + b"]",
        "batch-empty": b"[]",
        "empty": b"",
        "topic-empty-payload": t,
        "nested": b"[[[[[[[[[[[[[[[[" + full() + b"]]]]]]]]]]]]]]]]",
        "nan": full(value=float("nan")),
        "infinity": b'{"device_id":"d","sensor_type":"gas","ts":1764399940000,"value":-Infinity}',
        "huge-number": b'{"device_id":"d","sensor_type":"gas","ts":1764399940000,"value":1e999}',
        "big-int": full(ts=10**25),
        "id-newline": full(device_id="dev\n"),
        "id-long": full(site="s" * 65),
        "id-unicode": full(device_id="d\u00e9v"),
        "unknown-type": full(sensor_type="flux_capacitor"),
        "bad-type": full(sensor_type="Temp"),
        "wrong-unit": full(unit="F"),
        "topic-mismatch": t + obj(device_id="dev-000043"),
        "seq-max": full(seq=2**53 - 1),
        "seq-over": full(seq=2**53),
        "seq-negative": full(seq=-1),
        "seq-float": full(seq=1.0),
        "ts-old": full(ts=NOW_MS - 31 * 86_400_000),
        "ts-future": full(ts=NOW_MS + 301_000),
        "ts-float": full(ts=1764399940000.5),
        "missing-value": b'{"device_id":"d","sensor_type":"gas","ts":1764399940000}',
        "wrong-type-value": full(value="21.5"),
        "bool-value": full(value=True),
        "truncated": full()[:-7],
        "bad-utf8": b'{"device_id":"d\xff","sensor_type":"gas","ts":1,"value":1}',
        "escapes": b'{"device_id":"d\\u0031","sensor_type":"g\\u0061s","ts":1764399940000,'
        b'"value":1, "extra":[1,{"a":null}]}',
        "bad-topic": b"sensors/plant a/temperature" + nul + obj(device_id="d1"),
        "topic-wildcard": b"sensors/+/temperature/#" + nul + obj(),
    }


def scanner_seeds() -> dict[str, bytes]:
    """name -> Kafka value; most in the ingester's layout (``encode(Reading)``)."""

    def rd(sensor_type: str, value: float, **fields: Any) -> Reading:
        base: dict[str, Any] = {"device_id": "d", "ts": TS}
        return Reading(**{**base, "sensor_type": sensor_type, "value": value, **fields})

    values = {
        "plain": rd("temperature", 21.5, device_id="dev-000042", site="plant-a"),
        "default-site": rd("gas", 0.0, ts=0),
        "seq": rd("co2", 415.0, device_id="d:1", seq=12),
        "seq-max": rd("co2", 1.0, device_id="d_1", seq=2**53 - 1),
        "unit": rd("power", -2.5, device_id="d.1", unit="W"),
        "ingest-ts": rd("power", 1.0, seq=3, unit="W", ingest_ts=TS + 5),
        "neg-ts": rd("humidity", 55.0, ts=-(10**17)),
        "max-ts": rd("humidity", 1.0, ts=999_999_999_999_999_999),
        "tiny": rd("pressure", 5e-324),
        "small": rd("pressure", 2.2250738585072014e-308),
        "huge": rd("pressure", 1.7976931348623157e308),
        "tenth": rd("vibration", 0.1),
        "neg-zero": rd("vibration", -0.0),
        "long-mantissa": rd("vibration", 0.30000000000000004),
        "int-15": rd("vibration", 123456789012345.0),
        "int-16": rd("vibration", 1234567890123456.0),
        "e16": rd("vibration", 1e16),
        "e-7": rd("vibration", -3e-7),
        "id-64": rd("gas", 1.0, device_id="x" * 64, site="S-" * 32),
        "unknown-type": rd("flux", 1.0),
        "unit-unicode": rd("gas", 1.0, unit="\u00b5g"),
    }
    seeds = {name: encode(reading) for name, reading in values.items()}
    plain = seeds["plain"]
    seeds.update(
        {
            "int-value": plain.replace(b"21.5", b"21"),
            # Found by fuzz/scanner.py: the compiled scanner reads -0.0, msgspec 0.0.
            "int-neg-zero": plain.replace(b"21.5", b"-0"),
            "exp-value": plain.replace(b"21.5", b"2.15E+1"),
            "spaces": plain.replace(b",", b", "),
            "reordered": b'{"sensor_type":"gas","device_id":"d","ts":1,"value":1.0}',
            "escaped-id": plain.replace(b"dev-000042", b"dev\\u002d000042"),
            "id-newline": plain.replace(b"dev-000042", b"dev\\n"),
            "seq-over": plain[:-1] + b',"seq":9007199254740992}',
            "ts-19-digits": plain.replace(str(TS).encode(), b"1000000000000000000"),
            "trailing": plain + b"\n",
            "bad-utf8": plain.replace(b"plant-a", b"plant\xff"),
        }
    )
    return seeds


def write(name: str, seeds: dict[str, bytes]) -> None:
    folder = CORPUS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for seed, data in seeds.items():
        (folder / seed).write_bytes(data)


def main() -> None:
    write("decoder", decoder_seeds())
    write("scanner", scanner_seeds())


if __name__ == "__main__":
    main()
