"""One exception root for the whole pipeline.

Hierarchy::

    IotpipeError                  anything this project raises on purpose
    ├── ConfigError               bad setting or catalogue; names the variable
    ├── StackError                local service stack could not install/start/stop
    └── ConnectorError            an external system (Kafka, MQTT, InfluxDB) failed
                                  .retryable: worth trying again later
                                  .retry_after: seconds the server asked us to wait

Library exceptions are translated at each connector boundary with
``raise ConnectorError(...) from exc`` so callers handle one family. Bad input
data is *not* an exception: codecs return rejections, which go to a dead-letter
topic (see ``iotpipe.codec``).
"""

from __future__ import annotations


class IotpipeError(Exception):
    """Root of every error the pipeline raises deliberately."""


class ConfigError(IotpipeError):
    """A setting or data file is invalid; the message names what to fix."""


class StackError(IotpipeError):
    """The local service stack could not be installed, started or stopped."""


class ConnectorError(IotpipeError):
    """An external system failed; retry semantics travel with the error."""

    def __init__(
        self, message: str, *, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
