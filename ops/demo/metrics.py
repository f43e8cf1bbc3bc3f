"""Scraping the components' Prometheus endpoints for the live status line."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

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
