"""Certificates made per launch for auto-mTLS (go-plugin's AutoMTLS)."""

from __future__ import annotations

import base64
import datetime
import ipaddress
from dataclasses import dataclass

from plugin_sdk._protocol import TLS_SERVER_NAME


@dataclass(frozen=True)
class CertPair:
    cert_pem: bytes
    key_pem: bytes
    cert_der: bytes

    @property
    def handshake_field(self) -> str:
        """The certificate as the handshake line's sixth field: base64 DER, no padding."""
        return base64.b64encode(self.cert_der).decode().rstrip("=")


def make_cert(common_name: str, hours: int = 24 * 30) -> CertPair:
    """A self-signed ECDSA P-256 certificate for `localhost`, its own CA.

    cryptography is imported here, not at module top, so plugins that never use
    TLS do not pay for it at start-up.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "DevStream"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(seconds=30))
        .not_valid_after(now + datetime.timedelta(hours=hours))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(TLS_SERVER_NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return CertPair(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert_der=cert.public_bytes(serialization.Encoding.DER),
    )


def pem_from_handshake_field(field: str) -> bytes:
    """Turn the handshake's base64 DER back into PEM for grpc's credentials."""
    der = base64.b64decode(field + "=" * (-len(field) % 4))
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"
    ).encode()
