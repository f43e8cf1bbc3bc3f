"""The InfluxDB writer's failure rules, fast: bisection, retries, Retry-After, giving up.

The HTTP transport is injected (a scripted responder, not an InfluxDB), so
these run in milliseconds; ``tests/integration/test_sinks_influx.py`` checks
the same writer against the real server.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import urllib3

from iotpipe.errors import ConfigError
from iotpipe.settings import InfluxSettings, SinkSettings
from sinks.influx import InfluxWriter
from tests.unit.sinks.letters import Letters


@dataclass
class Response:
    status: int
    data: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Scripted:
    """Answers each POST with ``answer(lines)``; records every request's lines."""

    answer: Callable[[list[str]], Response | Exception]
    requests: list[list[str]] = field(default_factory=list)

    def request(
        self, method: str, url: str, *, body: bytes | None = None, headers: dict[str, str]
    ) -> Response:
        assert method == "POST" and "/api/v2/write?" in url and body is not None
        raw = gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body
        lines = raw.decode().split("\n")
        self.requests.append(lines)
        answer = self.answer(lines)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def clear(self) -> None:
        pass


def writer(http: Scripted, sleeps: list[float], **sink: object) -> tuple[InfluxWriter, Letters]:
    letters = Letters()
    w = InfluxWriter(
        InfluxSettings(),
        SinkSettings(**{"retry_initial_s": 0.5, "retry_max_s": 8.0, **sink}),  # type: ignore[arg-type]
        letters,
        sleep=sleeps.append,
        http=http,
    )
    return w, letters


LINES = [f"m,device_id=d{i} v={i}.0 {i}" for i in range(64)]


def test_one_refused_point_is_found_by_bisection_and_the_rest_written() -> None:
    http = Scripted(lambda lines: Response(400, b"bad") if LINES[37] in lines else Response(204))
    w, letters = writer(http, [])
    w.write_lines(LINES)
    written = [line for req in http.requests for line in req if LINES[37] not in req]
    assert sorted(written) == sorted(set(LINES) - {LINES[37]})
    assert [(x.reason, x.payload) for x in letters.sent] == [("rejected_by_server", LINES[37])]
    assert len(http.requests) <= 2 * 6 + 1  # a path down a tree of 64 leaves, two per level
    assert w.stats.points_written == 63 and w.stats.dead_lettered == 1


def test_server_errors_are_retried_with_backoff_and_retry_after_wins() -> None:
    answers: list[Response | Exception] = [
        Response(503),
        Response(429, headers={"Retry-After": "3"}),
        Response(429, headers={"Retry-After": "120"}),  # capped at retry_max_s
        urllib3.exceptions.ProtocolError("connection reset"),
        Response(204),
    ]
    http = Scripted(lambda _lines: answers.pop(0))
    sleeps: list[float] = []
    w, letters = writer(http, sleeps)
    w.write_lines(LINES[:5])
    assert len(http.requests) == 5 and letters.sent == []
    assert 0.25 <= sleeps[0] <= 0.5 and sleeps[1:3] == [3.0, 8.0] and 2.0 <= sleeps[3] <= 4.0
    assert w.stats.retries == 4 and w.stats.points_written == 5


def test_after_the_last_attempt_every_point_is_dead_lettered() -> None:
    http = Scripted(lambda _lines: Response(503, b"overloaded"))
    w, letters = writer(http, [], retry_max_attempts=3)
    w.write_lines(LINES[:10])
    assert len(http.requests) == 3
    assert [x.payload for x in letters.sent] == LINES[:10]
    assert {(x.reason, x.attempts) for x in letters.sent} == {("retries_exhausted", 3)}
    assert w.stats.batches_given_up == 1 and w.stats.points_written == 0


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_wrong_token_or_bucket_stops_instead_of_dead_lettering(status: int) -> None:
    http = Scripted(lambda _lines: Response(status, b"unauthorized"))
    w, letters = writer(http, [])
    with pytest.raises(ConfigError, match=str(status)):
        w.write_lines(LINES[:3])
    assert letters.sent == [] and len(http.requests) == 1


def test_requests_hold_at_most_batch_size_lines() -> None:
    http = Scripted(lambda _lines: Response(204))
    w, _ = writer(http, [], batch_size=10, gzip=False)
    w.write_lines(LINES)
    assert [len(r) for r in http.requests] == [10] * 6 + [4]
    assert [line for r in http.requests for line in r] == LINES
