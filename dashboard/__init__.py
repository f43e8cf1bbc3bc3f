"""The built-in web dashboard (``iotpipe dashboard``): fleet, alerts, devices, pipeline.

``create_app(settings)`` builds the FastAPI app; ``flux`` builds the
(time-bounded, downsampled) InfluxDB queries, ``store`` runs them off the
event loop, ``shaping`` turns rows into chart columns, ``static/`` holds the
pages and the vendored chart library (uPlot).
"""

from __future__ import annotations

from dashboard.app import create_app

__all__ = ["create_app"]
