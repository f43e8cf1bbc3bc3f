"""Scraping the components' Prometheus endpoints for the live status line and the drain."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

from iotpipe import metrics as m
from ops.demo.plan import Plan

Samples = dict[str, float]


def scrape(host: str, port: int, timeout: float = 1.0) -> Samples | None:
    """Sample name -> value summed over labels; None if the endpoint does not answer."""
    if not port:
        return None
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return parse(text)


def parse(text: str) -> Samples:
    out: defaultdict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] += sample.value
    return dict(out)


def pipeline_samples(plan: Plan) -> tuple[Samples, Samples]:
    """The ingester's samples, and both flows' summed."""
    ingest = scrape(plan.settings.ingest.metrics_host, plan.ingest_port) or {}
    flows: Samples = {}
    host = plan.settings.flow.metrics_host
    for port in (m.flow_metrics_port(plan.flow_port, p) for p in ("normal", "high")):
        for k, v in (scrape(host, port) or {}).items():
            flows[k] = flows.get(k, 0.0) + v
    return ingest, flows


def status_line(ingest: Samples, flows: Samples, up_s: int, restarts: int) -> str:
    parts = [
        f"up {up_s // 60}:{up_s % 60:02d}",
        f"mqtt in {ingest.get(m.INGEST_READINGS.sample, 0):,.0f}",
        f"to kafka {ingest.get(m.INGEST_PRODUCED.sample, 0):,.0f}",
        f"flows read {flows.get(m.FLOW_READINGS.sample, 0):,.0f}",
        f"aggregates {flows.get(m.FLOW_AGGREGATES.sample, 0):,.0f}",
        f"alerts {flows.get(m.FLOW_ALERTS.sample, 0):,.0f}",
        f"dead-lettered {ingest.get(m.INGEST_DEAD_LETTERED.sample, 0):,.0f}",
        f"restarts {restarts}",
    ]
    return " | ".join(parts)
