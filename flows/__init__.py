"""Bytewax dataflows: windowed aggregation and anomaly detection. Not built yet."""
