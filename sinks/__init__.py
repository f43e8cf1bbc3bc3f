"""Sinks: InfluxDB writer (``sinks.influx``), alert emitters (``sinks.alerts``),
dead-letter writer (``sinks.dead_letter``), line protocol (``sinks.lineprotocol``)."""
