"""What MQTT authentication and the ACL cost the ingest drain (same run, on vs off).

Runs ``bench.ingest_drain``'s single-reading case against the stack's
Mosquitto (anonymous, the default) and against a second Mosquitto started by
the stack with ``IOTPIPE_MQTT_BROKER_AUTH`` (password file + ACL, every
publish and delivery checked), alternating, and reports the medians and
their ratio. Start the second broker first (its own state dir and port):

    IOTPIPE_STATE_DIR=/tmp/iotpipe-auth IOTPIPE_MQTT_URL=mqtt://127.0.0.1:18830 \
      IOTPIPE_MQTT_BROKER_AUTH=true iotpipe stack up mosquitto
    python -m bench.broker_auth_ab --secure-url mqtt://127.0.0.1:18830 \
      --secure-state-dir /tmp/iotpipe-auth --messages 50000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from bench.ingest_drain import RESULTS, run_case
from iotpipe.credentials import load_local_credentials
from iotpipe.errors import ConfigError
from iotpipe.settings import Settings, load_settings, role_account


def secure_settings(base: Settings, url: str, state_dir: Path) -> Settings:
    """``base`` pointed at the authenticating broker, with its admin account."""
    local = load_local_credentials(state_dir)
    if local is None:
        raise ConfigError(f"no credentials.json in {state_dir}: start that broker first")
    mqtt = role_account(base.mqtt.model_copy(update={"url": url}), local, "admin")
    return base.model_copy(update={"mqtt": mqtt})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secure-url", required=True, help="the authenticating broker")
    parser.add_argument("--secure-state-dir", type=Path, required=True)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    plain = load_settings()
    secure = secure_settings(plain, args.secure_url, args.secure_state_dir)
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for name, settings in (("off", plain), ("on", secure)):
            case: dict[str, Any] = run_case(settings, args.messages, 1)
            rates[name].append(case["ingester_msgs_per_s"])
    median = {k: statistics.median(v) for k, v in rates.items()}
    report = {
        "command": f"python -m bench.broker_auth_ab --secure-url {args.secure_url} "
        f"--secure-state-dir {args.secure_state_dir} --messages {args.messages} "
        f"--rounds {args.rounds}",
        "ingester_msgs_per_s": rates,
        "median": median,
        "ratio_on_to_off": median["on"] / median["off"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "broker_auth_ab.json").write_text(json.dumps(report, indent=2))
    for name in ("off", "on"):
        runs = ", ".join(f"{r:,.0f}" for r in rates[name])
        print(f"auth {name:>3}: median {median[name]:>9,.0f} msgs/s  ({runs})")
    print(f"ratio on/off: {report['ratio_on_to_off']:.2f}")


if __name__ == "__main__":
    main()
