"""Mosquitto's password file and ACL as the stack renders them (pure; the broker test is
tests/integration/test_mqtt_security.py)."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from iotpipe.credentials import ensure_local_credentials
from iotpipe.errors import ConfigError
from ops.stack.mqtt_auth import DeviceRegistry, hash_password, render_acl, render_password_file

# Written by Debian's `mosquitto_passwd -b pw alice secret` (Mosquitto 2.0.11).
MOSQUITTO_LINE = (
    "alice:$7$101$cu1YBUMAr6KlvWdL$3tdaY5H+ryxNlh8E2+zN0a4AefczgVV3kNp2Z9g5SjqL5dS654oWIYLZ"
    "ovOk5TkT1syctKxDuWpZ6TmtkwP8vg=="
)


def test_hash_matches_mosquitto_passwd() -> None:
    hashed = MOSQUITTO_LINE.split(":", 1)[1]
    salt = base64.b64decode(hashed.split("$")[3])
    assert hash_password("secret", salt) == hashed
    assert hash_password("secret") != hash_password("secret")  # fresh salt each time


def test_device_accounts_add_list_remove(tmp_path: Path) -> None:
    reg = DeviceRegistry(tmp_path / "devices.passwd")
    pw = reg.add("pump-7")
    assert len(pw) >= 30 and pw not in (tmp_path / "devices.passwd").read_text()
    assert stat.S_IMODE((tmp_path / "devices.passwd").stat().st_mode) == 0o600
    reg.add("fan.2")
    assert reg.list() == ["fan.2", "pump-7"]
    assert reg.remove("pump-7") and not reg.remove("pump-7")
    assert reg.list() == ["fan.2"]


@pytest.mark.parametrize("bad", ["a:b", "", "sensors/x", "dev\n", "x" * 65, "iotpipe-ingest", "+"])
def test_device_ids_that_would_break_the_file_or_the_acl_are_refused(
    tmp_path: Path, bad: str
) -> None:
    with pytest.raises(ConfigError):
        DeviceRegistry(tmp_path / "d").add(bad)


def test_password_file_has_every_role_and_device_hashed(tmp_path: Path) -> None:
    creds = ensure_local_credentials(tmp_path)
    reg = DeviceRegistry(tmp_path / "d")
    reg.add("pump-7")
    text = render_password_file(creds, reg)
    names = [line.split(":", 1)[0] for line in text.splitlines()]
    assert names == ["iotpipe-admin", "iotpipe-ingest", "iotpipe-alerts", "iotpipe-fleet", "pump-7"]
    assert all(line.split(":", 1)[1].startswith("$7$101$") for line in text.splitlines())
    assert not any(pw in text for pw in creds.mqtt.values())


def test_acl_gives_devices_only_their_own_topic(tmp_path: Path) -> None:
    reg = DeviceRegistry(tmp_path / "d")
    reg.add("pump-7")
    reg.add("gone")
    reg.remove("gone")
    lines = [ln for ln in render_acl(reg).splitlines() if ln and not ln.startswith("#")]
    assert lines[-2:] == ["user pump-7", "topic write sensors/+/+/pump-7"]
    assert "topic read sensors/#" in lines and "topic write alerts/#" in lines
    assert not any("gone" in ln or "pattern" in ln or "anonymous" in ln for ln in lines)
