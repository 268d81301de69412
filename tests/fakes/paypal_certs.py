"""A local stand-in for PayPal's webhook signing infrastructure, for tests without network.

PayPal signs webhooks with the private key of a certificate it publishes at ``PAYPAL-CERT-URL``
(https://developer.paypal.com/api/rest/webhooks/rest/#link-selfverificationmethod). This module
plays both sides of that with a locally generated PKI:

* :class:`Authority` - a throw-away CA (and intermediates) issuing PayPal-like signing
  certificates and the TLS certificate of the fake host;
* :func:`sign_webhook` - what PayPal does when it sends a webhook: RSA-SHA256 over
  ``transmission_id|transmission_time|webhook_id|crc32(body)``, as request headers;
* :class:`PayPalCertHost` - an HTTPS server on a free local port that serves published certificate
  chains (recording every request, so a test can prove no fetch was made) and PayPal's online
  verification API: ``POST /v1/oauth2/token`` (client credentials, HTTP Basic) and
  ``POST /v1/notifications/verify-webhook-signature`` (Bearer token), which checks the signature
  against the certificate it serves, the way PayPal does.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import tempfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SIGNING_CN = "messageverificationcerts.paypal.com"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Authority(Issued):
    """A CA that issues certificates (a root, or an intermediate of another authority)."""

    @classmethod
    def root(
        cls,
        common_name: str = "payrail test root CA",
        *,
        valid_from: datetime = datetime(2020, 1, 1, tzinfo=UTC),
        valid_until: datetime = datetime(2040, 1, 1, tzinfo=UTC),
    ) -> Authority:
        key = _key()
        builder = _builder(_name(common_name), _name(common_name), key, valid_from, valid_until)
        cert = (
            builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def intermediate(self, common_name: str = "payrail test intermediate CA") -> Authority:
        key = _key()
        not_before, not_after = self.cert.not_valid_before_utc, self.cert.not_valid_after_utc
        cert = (
            _builder(_name(common_name), self.cert.subject, key, not_before, not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(self._authority_key_id(), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return Authority(key, cert)

    def issue(
        self,
        *,
        valid_from: datetime,
        valid_until: datetime,
        common_name: str = SIGNING_CN,
        server_ip: str | None = None,
    ) -> Issued:
        """An end-entity certificate: PayPal's signing certificate, or a TLS server's."""
        key = _key()
        builder = _builder(_name(common_name), self.cert.subject, key, valid_from, valid_until)
        builder = builder.add_extension(self._authority_key_id(), critical=False)
        if server_ip is not None:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(IPv4Address(server_ip))]),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        return Issued(key, builder.sign(self.key, hashes.SHA256()))

    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())


def self_signed(*, valid_from: datetime, valid_until: datetime) -> Issued:
    """A signing certificate nobody vouches for (what a forger would serve)."""
    key = _key()
    cert = _builder(_name(SIGNING_CN), _name(SIGNING_CN), key, valid_from, valid_until).sign(
        key, hashes.SHA256()
    )
    return Issued(key, cert)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: rsa.RSAPrivateKey,
    valid_from: datetime,
    valid_until: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_until)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def crc_message(
    transmission_id: str, transmission_time: str, webhook_id: str, body: bytes
) -> bytes:
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body)}".encode()


def sign_webhook(
    signer: rsa.RSAPrivateKey,
    body: bytes,
    *,
    webhook_id: str,
    cert_url: str,
    transmission_id: str = "69cd13f0-d67a-11e5-baa3-778b53f4ae55",
    transmission_time: str = "2025-03-01T11:59:58Z",
) -> dict[str, str]:
    """The headers PayPal sends with ``body`` (as PayPal spells them)."""
    message = crc_message(transmission_id, transmission_time, webhook_id, body)
    signature = signer.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {
        "PAYPAL-TRANSMISSION-ID": transmission_id,
        "PAYPAL-TRANSMISSION-TIME": transmission_time,
        "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
        "PAYPAL-CERT-URL": cert_url,
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
    }


@dataclass
class PayPalCertHost:
    """An HTTPS fake of PayPal's certificate host and webhook verification API.

    HTTPS because payrail only fetches certificates over https; plain ``http.server`` in a
    thread because that is all a cert host needs (the payments API fake is ``paypal_server``).
    """

    authority: Authority
    client_id: str = "fake-client-id"
    client_secret: str = field(default_factory=lambda: "fake-secret-" + secrets.token_hex(8))
    certs: dict[str, bytes] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the fake is not running"
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def publish(self, name: str, *chain: Issued) -> str:
        """Serve ``chain`` (leaf first) as one PEM file; returns its URL."""
        path = f"/v1/notifications/certs/{name}"
        self.certs[path] = b"".join(c.pem for c in chain)
        return self.base_url + path

    def client_context(self) -> ssl.SSLContext:
        """A TLS context that trusts the fake host (for the httpx client under test)."""
        return ssl.create_default_context(cadata=self.authority.pem.decode())

    @contextmanager
    def running(self) -> Iterator[PayPalCertHost]:
        now = datetime.now(UTC)
        tls = self.authority.issue(
            valid_from=now - timedelta(days=1),
            valid_until=now + timedelta(days=1),
            common_name="127.0.0.1",
            server_ip="127.0.0.1",
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as folder:
            cert_file, key_file = Path(folder, "cert.pem"), Path(folder, "key.pem")
            cert_file.write_bytes(tls.pem)
            key_file.write_bytes(
                tls.key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            context.load_cert_chain(cert_file, key_file)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
            self._server = None

    # ------------------------------------------------------------------------ the API side

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, bytes]:
        self.requests.append((method, path))
        if path in self.statuses:
            return self.statuses[path], b"{}"
        if method == "GET" and path in self.certs:
            return 200, self.certs[path]
        if method == "POST" and path == "/v1/oauth2/token":
            return self._token(headers, body)
        if method == "POST" and path == "/v1/notifications/verify-webhook-signature":
            return self._verify(headers, body)
        return 404, b'{"name": "RESOURCE_NOT_FOUND"}'

    def _token(self, headers: Any, body: bytes) -> tuple[int, bytes]:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        grant = parse_qs(body.decode()).get("grant_type")
        if headers.get("Authorization") != f"Basic {expected}" or grant != ["client_credentials"]:
            return 401, b'{"error": "invalid_client"}'
        token = "A21AA" + secrets.token_hex(16)
        self.tokens.add(token)
        answer = {"access_token": token, "token_type": "Bearer", "expires_in": 32400}
        return 200, json.dumps(answer).encode()

    def _verify(self, headers: Any, body: bytes) -> tuple[int, bytes]:
        token = (headers.get("Authorization") or "").removeprefix("Bearer ")
        if token not in self.tokens:
            return 401, b'{"error": "invalid_token"}'
        try:
            request = json.loads(body)
            # PayPal checks the event as it was delivered: payrail splices the raw body in last.
            marker = b'"webhook_event": '
            raw_event = body[body.index(marker) + len(marker) : -1]
            fields = {k: request[k] for k in ("transmission_id", "transmission_time", "webhook_id")}
            cert_path = urlsplit(request["cert_url"]).path
            signature = base64.b64decode(request["transmission_sig"])
        except (ValueError, KeyError):
            return 400, b'{"name": "INVALID_REQUEST"}'
        chain = self.certs.get(cert_path)
        message = crc_message(
            fields["transmission_id"], fields["transmission_time"], fields["webhook_id"], raw_event
        )
        verified = (
            chain is not None
            and request.get("auth_algo") == "SHA256withRSA"
            and _rsa_verifies(x509.load_pem_x509_certificates(chain)[0], signature, message)
        )
        status = "SUCCESS" if verified else "FAILURE"
        return 200, json.dumps({"verification_status": status}).encode()


def _rsa_verifies(cert: x509.Certificate, signature: bytes, message: bytes) -> bool:
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    try:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _handler(fake: PayPalCertHost) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, payload = fake.handle(method, urlsplit(self.path).path, self.headers, body)
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def log_message(self, format: str, *args: Any) -> None:
            """Silence the default stderr access log."""

    return Handler
