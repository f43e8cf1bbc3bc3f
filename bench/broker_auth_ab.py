"""What MQTT authentication, the ACL and TLS cost the ingest drain (same run, on vs off).

Runs ``bench.ingest_drain``'s single-reading case (preload a backlog, then
drain it with the ingester into Kafka) against three listeners, alternating:

- ``open``: a second Mosquitto the stack started with broker authentication
  off (anonymous clients, no ACL), the baseline;
- ``auth``: the stack's Mosquitto as it runs by default (accounts + ACL);
- ``auth+tls``: the same broker's TLS listener (the stack's CA pinned).

Start the open broker first (its own state dir and port):

    IOTPIPE_STATE_DIR=/tmp/iotpipe-open IOTPIPE_MQTT_URL=mqtt://127.0.0.1:18830 \
      IOTPIPE_MQTT_BROKER_AUTH=false IOTPIPE_MQTT_BROKER_TLS_PORT=0 \
      IOTPIPE_MQTT_BROKER_CERT_PORT=0 iotpipe stack up mosquitto
    python -m bench.broker_auth_ab --open-url mqtt://127.0.0.1:18830 \
      --messages 50000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from bench.ingest_drain import RESULTS, run_case
from iotpipe.settings import Settings, load_settings, with_local_credentials


def listener(base: Settings, url: str) -> Settings:
    """``base`` on another listener; mqtts:// pins the stack's CA."""
    mqtt = base.mqtt.model_copy(update={"url": url, "tls_ca_file": None})
    return with_local_credentials(base.model_copy(update={"mqtt": mqtt}), "admin")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open-url", required=True, help="a broker with authentication off")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = load_settings()
    cases = {
        "open": listener(base, args.open_url),
        "auth": base,
        "auth+tls": listener(base, f"mqtts://{base.mqtt.host}:{base.mqtt.broker_tls_port}"),
    }
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, settings in cases.items():
            case: dict[str, Any] = run_case(settings, args.messages, 1)
            rates[name].append(case["ingester_msgs_per_s"])
    median = {k: statistics.median(v) for k, v in rates.items()}
    ratio_to_open = {k: v / median["open"] for k, v in median.items()}
    report = {
        "command": f"python -m bench.broker_auth_ab --open-url {args.open_url} "
        f"--messages {args.messages} --rounds {args.rounds}",
        "ingester_msgs_per_s": rates,
        "median": median,
        "ratio_to_open": ratio_to_open,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "broker_auth_ab.json").write_text(json.dumps(report, indent=2))
    for name in cases:
        runs = ", ".join(f"{r:,.0f}" for r in rates[name])
        print(
            f"{name:>8}: median {median[name]:>9,.0f} msgs/s  x{ratio_to_open[name]:.2f}  ({runs})"
        )


if __name__ == "__main__":
    main()
