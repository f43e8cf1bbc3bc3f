"""docker-compose.yml cannot run here (no Docker engine): check it parses and
agrees with the native stack's defaults and config files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from iotpipe.settings import InfluxSettings, KafkaSettings, MqttSettings

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def host_ports(service: dict[str, Any]) -> set[int]:
    return {int(p.split(":")[-2]) for p in service.get("ports", [])}


def test_services_and_ports_match_the_settings_defaults() -> None:
    services = compose()["services"]
    assert {"mosquitto", "kafka", "influxdb", "grafana"} <= set(services)
    assert host_ports(services["mosquitto"]) == {MqttSettings().port}
    assert host_ports(services["kafka"]) == {int(KafkaSettings().bootstrap_servers.split(":")[1])}
    assert host_ports(services["influxdb"]) == {int(InfluxSettings().url.rsplit(":", 1)[1])}
    init = services["influxdb"]["environment"]
    assert init["DOCKER_INFLUXDB_INIT_ORG"].endswith(f":-{InfluxSettings().org}}}")
    assert init["DOCKER_INFLUXDB_INIT_BUCKET"].endswith(f":-{InfluxSettings().bucket}}}")


def test_mounted_files_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source} missing"
        if "build" in service:
            assert (REPO / service["build"] / "Dockerfile").exists()


def directives(path: Path) -> dict[str, str]:
    lines = [ln.split(None, 1) for ln in path.read_text().splitlines()]
    return {ln[0]: ln[1] for ln in lines if ln and not ln[0].startswith("#") and len(ln) == 2}


def test_docker_mosquitto_config_matches_the_native_one() -> None:
    native = directives(REPO / "deploy/mosquitto/mosquitto.conf")
    docker = directives(REPO / "deploy/mosquitto/docker.conf")
    differ_by_design = {
        "listener",
        "persistence_location",
        "log_dest",
        "user",
        "log_timestamp_format",
    }
    for key, value in native.items():
        if key not in differ_by_design:
            assert docker.get(key) == value, key


def test_kafka_settings_agree_with_server_properties() -> None:
    props = dict(
        re.findall(r"^([a-z.]+)=(.*)$", (REPO / "deploy/kafka/server.properties").read_text(), re.M)
    )
    env = compose()["services"]["kafka"]["environment"]
    for key in ("num.partitions", "auto.create.topics.enable", "offsets.topic.replication.factor"):
        assert str(env["KAFKA_" + key.upper().replace(".", "_")]) == props[key], key
