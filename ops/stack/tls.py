"""The local stack's own certificate authority, for Mosquitto's and Kafka's TLS.

Generated on first start under ``<state_dir>/tls`` (keys 0600) and
kept: clients pin ``ca.crt``, so a new CA on every start would break every
device that was given the old one. The server certificate is reissued when
the broker's host name is not among its names or it is within 30 days of
expiry. Device certificates (``iotpipe devices add ID --cert DIR``) carry
the device id as their common name; the client-certificate listener takes
it as the MQTT username, so the same ACL applies.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iotpipe.credentials import local_ca_file, write_private

CA_DAYS = 3650
LEAF_DAYS = 825  # the longest validity clients such as browsers and Apple's accept
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "iotpipe local stack"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _host_names(host: str) -> list[x509.GeneralName]:
    """The broker's names: its bind address, plus loopback's usual names."""
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    try:
        extra: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        extra = x509.DNSName(host)
    if extra not in names:
        names.append(extra)
    return names


class LocalCA:
    """A CA key and certificate in ``home``, made on first use and then kept."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.cert_file = home / "ca.crt"
        self.key_file = home / "ca.key"

    def ensure(self) -> None:
        if self.cert_file.exists() and self.key_file.exists():
            return
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name("iotpipe local CA")
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        write_private(self.key_file, _key_pem(key))
        write_private(self.cert_file, _cert_pem(cert))
        self.cert_file.chmod(0o644)  # the CA certificate is public: devices get a copy

    def _load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        self.ensure()
        cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{self.key_file}: not an EC key")
        return cert, key

    def issue(
        self, common_name: str, names: list[x509.GeneralName] | None, client: bool
    ) -> tuple[str, str]:
        """A new leaf key and certificate (PEM), for a server or a client."""
        ca_cert, ca_key = self._load()
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return _key_pem(key), _cert_pem(cert)


def _server_cert_current(path: Path, names: list[x509.GeneralName]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    fresh = cert.not_valid_after_utc - _now() > RENEW_BEFORE
    return fresh and all(n in have for n in names)


def ensure_server_tls(state_dir: Path, host: str, server: str = "mosquitto") -> TlsFiles:
    """The CA and a certificate for ``server`` at ``host``, made or renewed as needed."""
    ca_cert = local_ca_file(state_dir)
    ca = LocalCA(ca_cert.parent)
    ca.ensure()
    files = TlsFiles(ca_cert, ca.home / f"{server}.crt", ca.home / f"{server}.key")
    names = _host_names(host)
    if not (files.server_key.exists() and _server_cert_current(files.server_cert, names)):
        key, cert = ca.issue(f"iotpipe {server}", names, client=False)
        write_private(files.server_key, key)
        write_private(files.server_cert, cert)
    return files


def issue_device_cert(state_dir: Path, device_id: str, out_dir: Path) -> tuple[Path, Path]:
    """A client key and certificate for ``device_id`` in ``out_dir`` (the key 0600)."""
    ca = LocalCA(local_ca_file(state_dir).parent)
    key, cert = ca.issue(device_id, None, client=True)
    key_file, cert_file = out_dir / f"{device_id}.key", out_dir / f"{device_id}.crt"
    write_private(key_file, key)
    write_private(cert_file, cert)
    cert_file.chmod(0o644)
    return key_file, cert_file
