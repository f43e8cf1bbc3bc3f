"""Entry point for ``python -m bytewax.run flows.app:flow`` (settings from IOTPIPE_*)."""

from flows.dataflow import build_flow
from iotpipe.settings import load_settings

flow = build_flow(load_settings(role="alerts"))
