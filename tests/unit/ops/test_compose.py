"""docker-compose.yml cannot run here (no Docker engine): check it parses and
agrees with the native stack's defaults and config files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from iotpipe.settings import InfluxSettings, KafkaSettings, MqttSettings

REPO = Path(__file__).resolve().parents[3]


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
        "password_file",
        "acl_file",
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


# -- Grafana: provisioning wired into compose, dashboards well-formed ------------

GRAFANA = REPO / "deploy/grafana"
GRAFANA_MACROS = {"v.timeRangeStart", "v.timeRangeStop", "v.windowPeriod"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_MACRO = re.compile(r"\bv\.\w+")


def dashboards() -> dict[str, dict[str, Any]]:
    """Every provisioned dashboard, by file name."""
    out = {}
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        data = json.loads(path.read_text())
        assert isinstance(data, dict)
        out[path.name] = data
    return out


def panel_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title / refId, Flux) for every target of every panel (rows included)."""
    out = []
    panels = list(board.get("panels", []))
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))  # collapsed rows hold their panels
        if panel.get("type") == "row":
            continue
        for target in panel.get("targets", []):
            out.append((f"{panel['title']} / {target.get('refId')}", target.get("query", "")))
    return out


def variables_used(text: str) -> set[str]:
    return {a or b for a, b in _VARIABLE.findall(text)}


def test_compose_mounts_the_provisioning_the_dashboards_expect() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yaml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    assert mounts["./deploy/grafana/dashboards"] == entry["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_datasource_matches_the_influxdb_service() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/influxdb.yaml").read_text())
    (ds,) = sources["datasources"]
    assert ds["type"] == "influxdb" and ds["jsonData"]["version"] == "Flux"
    assert ds["url"] == f"http://influxdb:{InfluxSettings().url.rsplit(':', 1)[1]}"
    services = compose()["services"]
    init, env = services["influxdb"]["environment"], services["grafana"]["environment"]
    # Each $VAR the data source reads is set for Grafana from the same expression
    # (variable and default) that initialises InfluxDB.
    for key, init_key in (
        ("organization", "DOCKER_INFLUXDB_INIT_ORG"),
        ("defaultBucket", "DOCKER_INFLUXDB_INIT_BUCKET"),
    ):
        assert env[ds["jsonData"][key].lstrip("$")] == init[init_key], key
    assert (
        env[ds["secureJsonData"]["token"].lstrip("$")] == init["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    )
    for name, board in dashboards().items():
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == ds["uid"], (name, panel["title"])


def test_the_five_dashboards_exist_with_unique_uids() -> None:
    boards = dashboards()
    assert set(boards) == {
        "fleet-overview.json",
        "sensor-type.json",
        "device.json",
        "anomalies.json",
        "pipeline-health.json",
    }
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids)


def test_every_panel_has_a_query_and_every_variable_is_defined() -> None:
    for name, board in dashboards().items():
        defined = [v["name"] for v in board["templating"]["list"]]
        assert len(set(defined)) == len(defined), name
        for panel in board["panels"]:
            assert panel.get("targets"), f"{name}: panel {panel['title']!r} has no query"
        texts = panel_queries(board)
        texts += [(f"title {p['title']}", p["title"]) for p in board["panels"]]
        # A variable's query may use only the variables defined before it.
        for i, var in enumerate(board["templating"]["list"]):
            if var["type"] == "query":
                missing = variables_used(var["query"]) - set(defined[:i])
                assert not missing, f"{name}: variable {var['name']} uses {missing}"
        for where, text in texts:
            assert text.strip(), f"{name}: {where} is empty"
            missing = variables_used(text) - set(defined)
            assert not missing, f"{name}: {where} uses undefined {missing}"
        for where, query in panel_queries(board):
            assert set(_MACRO.findall(query)) <= GRAFANA_MACROS, f"{name}: {where}"
            assert "v.timeRangeStart" in query and "v.timeRangeStop" in query, where
            if "aggregateWindow" in query:
                assert "every: v.windowPeriod" in query, f"{name}: {where}"


def test_time_series_panels_are_downsampled() -> None:
    for name, board in dashboards().items():
        for panel in board["panels"]:
            if panel["type"] == "timeseries":
                for target in panel["targets"]:
                    assert "aggregateWindow(every: v.windowPeriod" in target["query"], (
                        name,
                        panel["title"],
                    )
