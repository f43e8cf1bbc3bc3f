"""Each stage's InfluxDB token can do what the stage needs and nothing else.

The stack makes a write-only token (the flow's sink) and a read-only one (the
dashboard) on the real InfluxDB; the flow's and the dashboard's settings pick
them up, and InfluxDB itself refuses what each may not do.
"""

from __future__ import annotations

import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.rest import ApiException
from pydantic import SecretStr

from iotpipe.credentials import load_local_credentials
from iotpipe.errors import ConfigError
from iotpipe.model import Aggregate
from iotpipe.settings import Settings, with_local_credentials
from ops.stack import Stack
from sinks.influx import InfluxWriter

T0 = 1_733_300_000_000


def in_bucket(settings: Settings, bucket: str, token: str | None = None) -> Settings:
    update: dict[str, object] = {"bucket": bucket}
    if token is not None:
        update["token"] = SecretStr(token)
    return settings.model_copy(update={"influx": settings.influx.model_copy(update=update)})


def unset_token(stack: Stack) -> Settings:
    """The stack's settings as a command sees them before credentials are filled in."""
    return in_bucket(stack.settings, stack.settings.influx.bucket, "")


def aggregate(i: int) -> Aggregate:
    return Aggregate(
        device_id=f"dev-{i}",
        sensor_type="gas",
        site="s",
        window="1m",
        start=T0 + 60_000 * i,
        end=T0 + 60_000 * (i + 1),
        count=1,
        mean=1.0,
        min=1.0,
        max=1.0,
        std=0.0,
        last=1.0,
    )


def rows(settings: Settings, bucket: str) -> int:
    s = settings.influx
    with InfluxDBClient(url=s.url, token=s.token.get_secret_value(), org=s.org) as client:
        tables = client.query_api().query(f'from(bucket: "{bucket}") |> range(start: 0)')
    return sum(len(t.records) for t in tables)


def test_stage_tokens_are_made_and_each_command_gets_its_own(stack: Stack) -> None:
    local = load_local_credentials(stack.settings.core.state_dir)
    assert local is not None
    tokens = {local.influx_token, local.influx_write_token, local.influx_read_token}
    assert len(tokens) == 3 and "" not in tokens
    base = unset_token(stack)
    assert with_local_credentials(base, "alerts").influx.token.get_secret_value() == (
        local.influx_write_token
    )
    reader = with_local_credentials(base, "admin", influx="read")
    assert reader.influx.token.get_secret_value() == local.influx_read_token
    assert with_local_credentials(base, "admin").influx.token.get_secret_value() == (
        local.influx_token
    )
    # Already made: a second start keeps them.
    assert not stack.influxdb.ensure_stage_tokens()


def test_the_sinks_token_writes_but_cannot_read(stack: Stack, bucket: str) -> None:
    flow = with_local_credentials(unset_token(stack), "alerts")
    s = in_bucket(flow, bucket)
    writer = InfluxWriter(s.influx, s.sink)
    writer.check()  # an empty write: the probe a write-only token may make
    writer.write([aggregate(i) for i in range(5)])
    written = rows(in_bucket(stack.settings, bucket), bucket)  # the operator reads them
    assert written >= 5
    with pytest.raises(ApiException) as refused:
        rows(s, bucket)
    assert refused.value.status in {401, 403, 404}


def test_the_dashboards_token_reads_but_cannot_write(stack: Stack, bucket: str) -> None:
    operator = in_bucket(stack.settings, bucket)
    InfluxWriter(operator.influx, operator.sink).write([aggregate(0)])
    reader = in_bucket(with_local_credentials(unset_token(stack), "admin", influx="read"), bucket)
    assert rows(reader, bucket) == rows(operator, bucket) > 0
    with pytest.raises(ConfigError, match="IOTPIPE_INFLUX_TOKEN: InfluxDB refused \\(403\\)"):
        InfluxWriter(reader.influx, reader.sink).check()


def test_a_missing_bucket_is_still_named_with_the_write_only_token(stack: Stack) -> None:
    s = in_bucket(with_local_credentials(unset_token(stack), "alerts"), "no-such-bucket")
    with pytest.raises(ConfigError, match="IOTPIPE_INFLUX_BUCKET: bucket 'no-such-bucket'"):
        InfluxWriter(s.influx, s.sink).check()
