"""Facts about the machine and software a benchmark ran on, for the results file."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import re
from pathlib import Path
from typing import Any

import urllib3

from iotpipe.settings import Settings

PACKAGES = (
    "bytewax",
    "quixstreams",
    "confluent-kafka",
    "paho-mqtt",
    "numpy",
    "msgspec",
    "influxdb-client",
)


def memory_mb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def influx_version(settings: Settings) -> str | None:
    try:
        resp = urllib3.request("GET", f"{settings.influx.url}/health", timeout=3)
        return str(resp.json().get("version"))
    except Exception:
        return None


def kafka_version() -> str | None:
    """Kafka's version from the jar the local stack runs (``kafka_<scala>-<ver>.jar``)."""
    libs = Path(".iotpipe/kafka/libs")
    for jar in sorted(libs.glob("kafka_*.jar")) if libs.is_dir() else []:
        found = re.fullmatch(r"kafka_[0-9.]+-([0-9][0-9.]*[0-9])\.jar", jar.name)
        if found:
            return found.group(1)
    return None


def machine_facts(settings: Settings) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_mb": memory_mb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "kafka": kafka_version(),
        "influxdb": influx_version(settings),
        "load_average_start": load_average(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM).

    Not ``getrusage().ru_maxrss``: Linux carries that across ``execve``, so a
    child started from a big parent would report the parent's peak.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return math.nan
