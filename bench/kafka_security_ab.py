"""What SASL/SCRAM over TLS with ACLs costs the pipeline end to end (same run, on vs off).

Alternates ``bench.e2e`` (simulator -> MQTT -> ingester -> Kafka -> flow ->
InfluxDB, every stage a real process) between the stack's Kafka (PLAINTEXT)
and a second Kafka the stack started with ``IOTPIPE_KAFKA_SECURITY_PROTOCOL=
SASL_SSL``, and reports the delivered rate and latencies of each, and their
ratio. The second broker gets its own state directory holding the same
credentials, so one set of accounts works against both:

    mkdir -p /tmp/iotpipe-sasl && cp .iotpipe/credentials.json /tmp/iotpipe-sasl/
    IOTPIPE_STATE_DIR=/tmp/iotpipe-sasl IOTPIPE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 \
      IOTPIPE_KAFKA_SECURITY_PROTOCOL=SASL_SSL iotpipe stack up kafka
    python -m bench.kafka_security_ab --secure-bootstrap 127.0.0.1:19092 \
      --secure-state-dir /tmp/iotpipe-sasl --rate 5000 --duration 20 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.e2e import run_case
from bench.ingest_drain import RESULTS
from iotpipe.settings import load_settings


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the case (its child processes inherit them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def summarise(results: list[dict[str, Any]]) -> dict[str, float | None]:
    """Medians over the rounds of what the pipeline delivered, and how fast."""

    def median(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    lat = [r["latency"] for r in results]
    return {
        "kafka_readings_per_s": median([r["kafka_rate"] for r in results]),
        "delivered_fraction": median([r["delivered_fraction"] for r in results]),
        "event_to_kafka_p50_s": median([x["event_to_kafka"]["p50_s"] for x in lat]),
        "event_to_kafka_p99_s": median([x["event_to_kafka"]["p99_s"] for x in lat]),
        "event_to_aggregate_p99_s": median([x["event_to_aggregate"]["p99_s"] for x in lat]),
    }


def _ratio(on: float | None, off: float | None) -> float | None:
    return on / off if on is not None and off else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secure-bootstrap", required=True)
    parser.add_argument("--secure-state-dir", type=Path, required=True)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cases = {
        "plaintext": {},
        "sasl_ssl": {
            "IOTPIPE_STATE_DIR": str(args.secure_state_dir),
            "IOTPIPE_KAFKA_BOOTSTRAP_SERVERS": args.secure_bootstrap,
            "IOTPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        },
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, env in cases.items():
            with environment(env):
                result = run_case(load_settings(), args.rate, 1, args.duration)
            result.pop("cdf", None)
            runs[name].append(result)
    summary = {name: summarise(results) for name, results in runs.items()}
    plain, secure = summary["plaintext"], summary["sasl_ssl"]
    report = {
        "command": f"python -m bench.kafka_security_ab --secure-bootstrap {args.secure_bootstrap}"
        f" --secure-state-dir {args.secure_state_dir} --rate {args.rate}"
        f" --duration {args.duration} --rounds {args.rounds}",
        "runs": runs,
        "median": summary,
        "ratio_secure_to_plain": {k: _ratio(secure[k], plain[k]) for k in plain},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kafka_security_ab.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
