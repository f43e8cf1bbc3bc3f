"""InfluxDB sink: batched, compressed, retried writes that never drop a point.

- Lines come from ``sinks.lineprotocol`` (bulk f-strings, precision ms).
- Requests go straight to the write endpoint over urllib3 (pooled keep-alive
  connections): influxdb-client's synchronous writer gzips at level 9, which
  costs more CPU than the whole line building, and hides the status/headers
  the retry policy needs. influxdb-client is still used for the start-up check.
- Transient failures (network errors, 5xx, 429) are retried with exponential
  backoff and jitter, honouring Retry-After; meanwhile ``write`` blocks, which
  holds a Bytewax flow back. After ``retry_max_attempts`` the batch goes to
  ``dlq.sink`` (0 = retry forever).
- A point the server refuses (400 parse error, 422 field-type conflict) is
  found by bisecting the batch: InfluxDB 2.x rejects a whole request on a
  parse error and names only the first bad line, and a type conflict names
  none. Re-sending the good half is harmless because points are idempotent
  (same series + timestamp overwrite). Only the bad points are dead-lettered.
- 401/403/404 (token, permissions, bucket) are configuration errors: they
  raise, because dead-lettering every point for a wrong token would be worse.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import msgspec
import urllib3
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_never

from iotpipe.errors import ConfigError, ConnectorError
from iotpipe.retry import Backoff, retry_after_s
from iotpipe.schema import PRECISION
from iotpipe.settings import InfluxSettings, Settings, SinkSettings
from sinks.dead_letter import DeadLetterWriter, LetterSink, SinkDeadLetter, now_ms
from sinks.lineprotocol import Lines, build_lines

log = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_CONFIG_STATUS = frozenset({401, 403, 404})


class PointRejectedError(ConnectorError):
    """The server refused the content of a request (4xx); retrying will not help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, retryable=False)
        self.status = status


@dataclass
class WriterStats:
    """Counters, cumulative over the writer's life (exported by the caller)."""

    points_written: int = 0
    requests: int = 0
    retries: int = 0
    dead_lettered: int = 0
    batches_given_up: int = 0


class Transport(Protocol):
    """What the writer needs of HTTP: ``urllib3.PoolManager``, or a test's stand-in."""

    def request(
        self, method: str, url: str, *, body: bytes | None = None, headers: dict[str, str]
    ) -> Any: ...

    def clear(self) -> None: ...


class InfluxWriter:
    """Writes line protocol to one bucket; usable without Bytewax.

    ``dead_letters`` may be None only if the caller accepts that giving up
    raises instead (tests, one-off tools). ``http`` and ``sleep`` are
    injectable so the retry and bisection rules have fast unit tests.
    """

    def __init__(
        self,
        influx: InfluxSettings,
        sink: SinkSettings,
        dead_letters: LetterSink | None = None,
        *,
        bucket: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        http: Transport | None = None,
    ) -> None:
        self.influx = influx
        self.sink = sink
        self.bucket = bucket or influx.bucket
        self.stats = WriterStats()
        self._dead_letters = dead_letters
        self._sleep = sleep
        self._lock = threading.Lock()
        timeout = influx.timeout_ms / 1000
        self._http: Transport = http or urllib3.PoolManager(
            maxsize=4, retries=False, timeout=urllib3.Timeout(connect=min(timeout, 5), read=timeout)
        )
        base = influx.url.rstrip("/")
        if sink.influx_api == "v2":
            query = {"org": influx.org, "bucket": self.bucket, "precision": PRECISION}
            self._url = f"{base}/api/v2/write?{urlencode(query)}"
        else:
            self._url = f"{base}/write?{urlencode({'db': self.bucket, 'precision': PRECISION})}"
        self._headers = {
            "Authorization": f"Token {influx.token.get_secret_value()}",
            "Content-Type": "text/plain; charset=utf-8",
        }
        if sink.gzip:
            self._headers["Content-Encoding"] = "gzip"

    # -- start-up -----------------------------------------------------------

    def check(self) -> None:
        """Fail fast with a clear message if the server, token or bucket is wrong.

        v2: an empty write to the bucket (204), the one probe a write-only
        token may make: listing buckets needs read access, and with a token
        that lacks it InfluxDB answers an empty list rather than 403.
        """
        base = self.influx.url.rstrip("/")
        if self.sink.influx_api == "v2":
            method, url, body = "POST", self._url, b""
        else:
            method, body = "GET", None
            url = f"{base}/query?{urlencode({'q': 'SHOW DATABASES'})}"
        try:
            resp = self._http.request(method, url, body=body, headers=self._headers_plain())
        except urllib3.exceptions.HTTPError as exc:
            raise ConnectorError(f"InfluxDB at {base}: {exc}", retryable=True) from exc
        missing = ConfigError(
            f"IOTPIPE_INFLUX_BUCKET: bucket {self.bucket!r} does not exist in org"
            f" {self.influx.org!r} at {base}; create it first"
        )
        if resp.status == 404:
            raise ConfigError(f"{missing} ({_text(resp.data)})")
        if resp.status in _CONFIG_STATUS:
            raise ConfigError(
                f"IOTPIPE_INFLUX_TOKEN: InfluxDB refused ({resp.status}): {_text(resp.data)}"
            )
        if resp.status >= 300:
            raise ConnectorError(f"InfluxDB at {base}: HTTP {resp.status}: {_text(resp.data)}")
        if self.sink.influx_api == "v1":
            body_json: dict[str, Any] = resp.json()
            series = (body_json.get("results") or [{}])[0].get("series") or [{}]
            if [self.bucket] not in (series[0].get("values") or []):
                raise missing

    def _headers_plain(self) -> dict[str, str]:
        return {"Authorization": self._headers["Authorization"]}

    # -- writing ------------------------------------------------------------

    def write(self, items: Iterable[object]) -> None:
        """Aggregates, alerts and readings (or lists of them) as points."""
        self.write_built(build_lines(items))

    def write_built(self, built: Lines) -> None:
        if built.rejected:
            self._dead_letter(
                [
                    SinkDeadLetter(
                        sink="influx",
                        reason=r.reason,
                        error=r.detail,
                        payload=_describe(r.item),
                        failed_at=now_ms(),
                        target=self.bucket,
                    )
                    for r in built.rejected
                ]
            )
        self.write_lines(built.lines)

    def write_lines(self, lines: Sequence[str]) -> None:
        """Write in requests of at most ``batch_size`` lines; blocks while retrying."""
        size = self.sink.batch_size
        with self._lock:
            for start in range(0, len(lines), size):
                self._write_chunk(lines[start : start + size])

    def _write_chunk(self, lines: Sequence[str], depth: int = 0) -> None:
        try:
            self._post_retrying(lines)
        except PointRejectedError as exc:
            if len(lines) == 1:
                self._dead_letter([self._letter(lines[0], "rejected_by_server", str(exc), 1)])
                return
            if depth == 0:
                log.warning("InfluxDB refused a batch of %d (%s); bisecting", len(lines), exc)
            mid = len(lines) // 2
            self._write_chunk(lines[:mid], depth + 1)
            self._write_chunk(lines[mid:], depth + 1)
        except ConnectorError as exc:
            if not exc.retryable:
                raise
            self.stats.batches_given_up += 1
            log.error("giving up on %d points after retries: %s", len(lines), exc)
            attempts = self.sink.retry_max_attempts
            self._dead_letter(
                [self._letter(line, "retries_exhausted", str(exc), attempts) for line in lines]
            )

    def _post_retrying(self, lines: Sequence[str]) -> None:
        attempts = self.sink.retry_max_attempts
        retrying = Retrying(
            stop=stop_after_attempt(attempts) if attempts else stop_never,
            wait=Backoff(self.sink.retry_initial_s, self.sink.retry_max_s),
            retry=retry_if_exception(lambda e: isinstance(e, ConnectorError) and e.retryable),
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        body = "\n".join(lines).encode()
        if self.sink.gzip:
            body = gzip.compress(body, compresslevel=self.sink.gzip_level)
        for attempt in retrying:
            with attempt:
                self._post(body)
        self.stats.points_written += len(lines)

    def _post(self, body: bytes) -> None:
        self.stats.requests += 1
        try:
            resp = self._http.request("POST", self._url, body=body, headers=self._headers)
        except urllib3.exceptions.HTTPError as exc:
            raise ConnectorError(f"InfluxDB write: {exc}", retryable=True) from exc
        status = resp.status
        if status < 300:
            return
        text = _text(resp.data)
        if status in _RETRY_STATUS:
            raise ConnectorError(
                f"InfluxDB write: HTTP {status}: {text}",
                retryable=True,
                retry_after=retry_after_s(resp.headers.get("Retry-After")),
            )
        if status in _CONFIG_STATUS:
            raise ConfigError(f"InfluxDB write to bucket {self.bucket!r}: HTTP {status}: {text}")
        raise PointRejectedError(f"HTTP {status}: {text}", status)

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "InfluxDB write failed (attempt %d), retry in %.1fs: %s",
            state.attempt_number,
            wait,
            exc,
        )

    def _letter(self, line: str, reason: str, error: str, attempts: int) -> SinkDeadLetter:
        return SinkDeadLetter(
            sink="influx",
            reason=reason,
            error=error,
            payload=line,
            failed_at=now_ms(),
            attempts=attempts,
            target=self.bucket,
        )

    def _dead_letter(self, letters: list[SinkDeadLetter]) -> None:
        if self._dead_letters is None:
            raise ConnectorError(f"{len(letters)} points undeliverable: {letters[0].error}")
        self._dead_letters.send(letters)
        self.stats.dead_lettered += len(letters)
        log.warning("%d points to %s: %s", len(letters), self._dead_letters.topic, letters[0].error)

    def close(self) -> None:
        self._http.clear()


def _text(data: bytes, limit: int = 2000) -> str:
    return data[:limit].decode("utf-8", "replace").strip()


def _describe(item: object) -> str:
    """JSON for a model object (for the dead letter), or its repr."""
    try:
        return msgspec.json.encode(item).decode()
    except TypeError:
        return repr(item)


class _InfluxPartition(StatelessSinkPartition[Any]):
    def __init__(self, writer: InfluxWriter, dead_letters: DeadLetterWriter) -> None:
        self.writer = writer
        self.dead_letters = dead_letters

    def write_batch(self, items: list[Any]) -> None:
        self.writer.write(items)

    def close(self) -> None:
        self.writer.close()
        self.dead_letters.close()


class InfluxSink(DynamicSink[Any]):
    """Bytewax sink: items are ``Aggregate``/``Alert``/``Reading`` or lists of them.

    Each worker gets its own writer; the bucket is checked when the flow
    starts, so a missing bucket stops it with a clear ``ConfigError``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        bucket: str | None = None,
        stats: list[WriterStats] | None = None,
    ) -> None:
        self.settings = settings
        self.bucket = bucket
        self.stats = stats  # each partition's writer adds its counters here

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _InfluxPartition:
        dead_letters = DeadLetterWriter(
            self.settings.kafka, timeout_s=self.settings.sink.dlq_timeout_s
        )
        writer = InfluxWriter(
            self.settings.influx, self.settings.sink, dead_letters, bucket=self.bucket
        )
        writer.check()
        if self.stats is not None:
            self.stats.append(writer.stats)
        return _InfluxPartition(writer, dead_letters)
