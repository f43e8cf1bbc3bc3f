"""iotpipe: the shared core of the IoT stream-processing pipeline.

Stages (ingest, flows, sinks, simulators) meet here: settings, the message
model and codecs, topic names, the CLI and the local service stack.
"""

__version__ = "0.1.0"
