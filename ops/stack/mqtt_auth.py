"""Who may connect to the local Mosquitto, and what each account may touch.

Mosquitto reads two files we render: a password file (PBKDF2-SHA512 hashes,
Mosquitto 2.0's ``$7$`` format, so no plain password is ever on disk outside
``credentials.json``) and an ACL. Devices get one account each, named by
their device id, that may publish only under their own
``sensors/<site>/<type>/<device_id>`` and read nothing; the project's roles
(see ``iotpipe.credentials``) get exactly what their stage needs. Anonymous
clients are refused by the config itself.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path

from iotpipe.credentials import ACCOUNT_PREFIX, ROLES, LocalCredentials, mqtt_account, write_private
from iotpipe.errors import ConfigError
from iotpipe.topics import ID_RE

ITERATIONS = 101  # what mosquitto_passwd 2.0 writes

PROJECT_ACL = f"""\
# Rendered by iotpipe (ops/stack/mqtt_auth.py); edits are overwritten.
# Project accounts: exactly what each stage needs.
user {mqtt_account("admin")}
topic readwrite #

user {mqtt_account("ingest")}
topic read sensors/#

user {mqtt_account("alerts")}
topic write alerts/#

user {mqtt_account("fleet")}
topic write sensors/#

# Each registered device (iotpipe devices add): its own topic, nothing else.
"""


def render_acl(devices: DeviceRegistry) -> str:
    """The ACL: project roles, then one entry per registered device.

    Per device rather than a ``%u`` pattern so that ``devices remove`` also
    takes the rights away from the device's client certificate, which stays
    valid for the TLS handshake (the username is its common name).
    """
    entries = (f"user {d}\ntopic write sensors/+/+/{d}\n" for d in devices.list())
    return PROJECT_ACL + "\n".join(entries)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A Mosquitto 2.0 password-file hash (``$7$``: PBKDF2-HMAC-SHA512)."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS, 64)
    return f"$7${ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_device_id(device_id: str) -> str:
    """A device account name: a valid device id, no ':' (the file's separator)."""
    if not ID_RE.match(device_id) or ":" in device_id:
        raise ConfigError(
            f"device id {device_id!r}: use 1-64 of A-Z a-z 0-9 _ . - (no ':' in an account)"
        )
    if device_id.startswith(ACCOUNT_PREFIX):
        raise ConfigError(f"device id {device_id!r}: {ACCOUNT_PREFIX}* names project accounts")
    return device_id


class DeviceRegistry:
    """Device accounts, kept as ``id:hash`` lines (mode 0600) beside the broker's config."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        entries = {}
        for line in self.path.read_text().splitlines():
            name, sep, hashed = line.partition(":")
            if sep:
                entries[name] = hashed
        return entries

    def _write(self, entries: dict[str, str]) -> None:
        write_private(self.path, "".join(f"{k}:{v}\n" for k, v in sorted(entries.items())))

    def list(self) -> list[str]:
        return sorted(self._read())

    def add(self, device_id: str) -> str:
        """Create (or reset) a device's account; returns its new password, shown once."""
        entries = self._read()
        password = secrets.token_urlsafe(24)
        entries[check_device_id(device_id)] = hash_password(password)
        self._write(entries)
        return password

    def remove(self, device_id: str) -> bool:
        entries = self._read()
        if entries.pop(device_id, None) is None:
            return False
        self._write(entries)
        return True

    def hashed(self) -> dict[str, str]:
        return self._read()


def render_password_file(credentials: LocalCredentials, devices: DeviceRegistry) -> str:
    lines = [f"{mqtt_account(role)}:{hash_password(credentials.mqtt[role])}" for role in ROLES]
    lines += [f"{name}:{hashed}" for name, hashed in sorted(devices.hashed().items())]
    return "\n".join(lines) + "\n"
