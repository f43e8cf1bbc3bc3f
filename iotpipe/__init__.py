"""iotpipe: the shared core of the IoT stream-processing pipeline.

What every stage (ingest, flows, sinks, simulators) and application (ops,
dashboard) shares: settings, the message model and codecs, topic names, the
sensor catalogue and the server clients. It imports nothing above it
(``tests/unit/test_layers.py``).
"""

__version__ = "0.1.0"
