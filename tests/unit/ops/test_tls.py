"""The stack's CA and certificates: kept across starts, and accepted by a real TLS handshake
(Python's ssl on a socket pair; the broker test is tests/integration/test_mqtt_security.py)."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from iotpipe.credentials import local_ca_file
from ops.stack.tls import ensure_server_tls, issue_device_cert


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> str:
    """Both sides of a TLS handshake; returns the client's peer common name."""
    a, b = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server.wrap_socket(a, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(b, server_hostname=hostname) as c:
            subject = dict(x[0] for x in c.getpeercert()["subject"])  # type: ignore[index]
            c.send(b"x")
    finally:
        thread.join(5)
    return str(subject["commonName"])


def server_context(files: object) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files.server_cert, files.server_key)  # type: ignore[attr-defined]
    return ctx


def test_ca_is_made_once_and_keys_are_private(tmp_path: Path) -> None:
    first = ensure_server_tls(tmp_path, "127.0.0.1")
    ca_pem = first.ca_cert.read_bytes()
    assert mode(first.server_key) == 0o600
    assert mode(first.ca_cert.with_name("ca.key")) == 0o600
    assert mode(first.ca_cert) == 0o644
    again = ensure_server_tls(tmp_path, "127.0.0.1")
    assert again.ca_cert.read_bytes() == ca_pem
    assert again.server_cert.read_bytes() == first.server_cert.read_bytes()
    assert first.ca_cert == local_ca_file(tmp_path)


def test_a_client_pinning_the_ca_accepts_the_broker(tmp_path: Path) -> None:
    files = ensure_server_tls(tmp_path, "127.0.0.1")
    client = ssl.create_default_context(cafile=str(files.ca_cert))
    assert handshake(server_context(files), client, "127.0.0.1") == "iotpipe mosquitto"
    assert handshake(server_context(files), client, "localhost") == "iotpipe mosquitto"


def test_another_host_name_is_refused_until_the_certificate_names_it(tmp_path: Path) -> None:
    files = ensure_server_tls(tmp_path, "127.0.0.1")
    client = ssl.create_default_context(cafile=str(files.ca_cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server_context(files), client, "broker.example")
    renewed = ensure_server_tls(tmp_path, "broker.example")
    assert handshake(server_context(renewed), client, "broker.example") == "iotpipe mosquitto"


def test_a_client_without_the_ca_refuses_the_broker(tmp_path: Path) -> None:
    files = ensure_server_tls(tmp_path, "127.0.0.1")
    other = ensure_server_tls(tmp_path / "other", "127.0.0.1")
    client = ssl.create_default_context(cafile=str(other.ca_cert))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server_context(files), client, "127.0.0.1")


def test_a_device_certificate_names_the_device_and_is_for_clients(tmp_path: Path) -> None:
    files = ensure_server_tls(tmp_path, "127.0.0.1")
    key, crt = issue_device_cert(tmp_path, "pump-7", tmp_path)
    assert mode(key) == 0o600
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "pump-7"
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    server = server_context(files)
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(files.ca_cert)
    client = ssl.create_default_context(cafile=str(files.ca_cert))
    client.load_cert_chain(crt, key)
    assert handshake(server, client, "127.0.0.1") == "iotpipe mosquitto"
