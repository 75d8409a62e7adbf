"""The in-process proxy under test, its stand-in upstream and a test clock."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from aibox.llm_proxy.server import LLMProxy
from tests.integration.llm_proxy.llm_fake_upstream import FakeUpstream

CANARY_KEY = "sk-canary-7f3a9c2e41d8b6a5"
CLIENT_SECRET = "client-side-secret-0d1e"
SANDBOX_ID = "sbx-test-42"
USER = "dev@example.internal"


class FakeClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    upstream: FakeUpstream
    proxy: LLMProxy
    runner: web.AppRunner
    port: int
    clock: FakeClock
    key_file: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def records(self, count: int) -> list[dict[str, Any]]:
        """Wait until ``count`` payload records are written, then return them all."""
        log = self.proxy.payload_log
        for _ in range(500):
            if log.written >= count:
                break
            await asyncio.sleep(0.01)
        lines = log.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]


HarnessFactory = Callable[..., Awaitable[Harness]]


def write_test_ca(directory: Path) -> tuple[Path, Path, Path]:
    """Write a throwaway CA and a server certificate for localhost and 127.0.0.1.

    Returns the CA certificate, server certificate and server key paths.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    lifetime = datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aibox test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - lifetime)
        .not_valid_after(now + lifetime)
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
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - lifetime)
        .not_valid_after(now + lifetime)
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server-key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


def require_tool(name: str) -> str:
    """Return the path of ``name`` or skip, as the suite-wide helper does."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed; run scripts/install-deps.sh")
    return path
