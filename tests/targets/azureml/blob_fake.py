"""A local stand-in for Azure Blob Storage, reached through a real HTTPS proxy.

azure-ai-ml uploads a model with azure-storage-blob, which builds its own HTTP pipeline (it
does not use the MLClient transport) for ``https://<account>.blob.core.windows.net``. The test
points ``HTTPS_PROXY`` at :class:`BlobProxy`; the proxy accepts ``CONNECT``, terminates TLS with
a certificate from a throw-away test CA (trusted through ``REQUESTS_CA_BUNDLE``) and answers
the Blob REST calls an upload makes: get properties (HEAD), put blob, set metadata, list.
The blob SDK itself runs unmodified; only the server is fake.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape


def make_tls(tmp: Path, hosts: list[str]) -> tuple[Path, ssl.SSLContext]:
    """A test CA (written to ``ca.pem``) and a server context with a leaf cert for ``hosts``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "deployer test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = tmp / "ca.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem = tmp / "server.pem"
    cert_pem.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert_pem))
    return ca_pem, ctx


@dataclass
class Blob:
    data: bytes
    metadata: dict[str, str]
    etag: str = field(default_factory=lambda: f'"0x{uuid.uuid4().hex[:16].upper()}"')
    modified: str = field(default_factory=lambda: formatdate(usegmt=True))


class BlobStore:
    """Blobs by (account, container, name), plus a log of the calls."""

    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str, str], Blob] = {}
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def files(self, account: str, container: str, prefix: str = "") -> dict[str, bytes]:
        return {n: b.data for (a, c, n), b in self.blobs.items() if a == account and c == container and n.startswith(prefix)}


def _handler(store: BlobStore, host: str) -> type[http.server.BaseHTTPRequestHandler]:
    account = host.split(".")[0]

    class BlobHandler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                   error: str | None = None) -> None:
            self.send_response(status)
            base = {"x-ms-request-id": str(uuid.uuid4()), "x-ms-version": self.headers.get("x-ms-version", "2025-01-05"),
                    "Date": formatdate(usegmt=True)}
            if error:
                base["x-ms-error-code"] = error
                if not body and self.command != "HEAD":
                    body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{error}</Code>'
                            f"<Message>{error}</Message></Error>").encode()
                    base["Content-Type"] = "application/xml"
            base.update(headers or {})
            if "Content-Length" not in base:
                base["Content-Length"] = str(len(body))
            for k, v in base.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _split(self) -> tuple[str, str, dict[str, list[str]]]:
            url = urlsplit(self.path)
            parts = unquote(url.path).lstrip("/").split("/", 1)
            return parts[0], (parts[1] if len(parts) > 1 else ""), parse_qs(url.query)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _blob_headers(self, blob: Blob) -> dict[str, str]:
            h = {"ETag": blob.etag, "Last-Modified": blob.modified, "x-ms-blob-type": "BlockBlob",
                 "x-ms-creation-time": blob.modified, "x-ms-lease-state": "available",
                 "x-ms-lease-status": "unlocked", "x-ms-server-encrypted": "true",
                 "Content-Type": "application/octet-stream", "Content-Length": str(len(blob.data))}
            h.update({f"x-ms-meta-{k}": v for k, v in blob.metadata.items()})
            return h

        def do_HEAD(self) -> None:  # noqa: N802
            container, name, _ = self._split()
            with store.lock:
                store.calls.append(f"HEAD {container}/{name}")
                blob = store.blobs.get((account, container, name))
            if blob is None:
                self._reply(404, error="BlobNotFound")
            else:
                self._reply(200, headers=self._blob_headers(blob))

        def do_GET(self) -> None:  # noqa: N802
            container, name, query = self._split()
            with store.lock:
                store.calls.append(f"GET {container}/{name}?{'&'.join(sorted(query))}")
                if query.get("comp") == ["list"]:
                    prefix = (query.get("prefix") or [""])[0]
                    items = "".join(
                        f"<Blob><Name>{escape(n)}</Name><Properties><Content-Length>{len(d)}</Content-Length>"
                        f"<BlobType>BlockBlob</BlobType></Properties></Blob>"
                        for n, d in sorted(store.files(account, container, prefix).items()))
                    xml = (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="{container}">'
                           f"<Prefix>{escape(prefix)}</Prefix><Blobs>{items}</Blobs><NextMarker /></EnumerationResults>")
                    self._reply(200, xml.encode(), {"Content-Type": "application/xml"})
                    return
                blob = store.blobs.get((account, container, name))
            if blob is None:
                self._reply(404, error="BlobNotFound")
            else:
                self._reply(200, blob.data, self._blob_headers(blob))

        def do_PUT(self) -> None:  # noqa: N802
            container, name, query = self._split()
            body = self._body()
            meta = {k[len("x-ms-meta-"):].lower(): v for k, v in self.headers.items()
                    if k.lower().startswith("x-ms-meta-")}
            comp = (query.get("comp") or [""])[0]
            with store.lock:
                store.calls.append(f"PUT {container}/{name}" + (f"?comp={comp}" if comp else ""))
                key = (account, container, name)
                if comp == "metadata":
                    blob = store.blobs.get(key)
                    if blob is None:
                        self._reply(404, error="BlobNotFound")
                        return
                    blob.metadata = meta
                    blob.etag = Blob(b"", {}).etag
                elif comp:
                    self._reply(501, error="NotImplementedInFake")
                    return
                else:
                    blob = Blob(body, meta)
                    store.blobs[key] = blob
            headers = {"ETag": blob.etag, "Last-Modified": blob.modified, "x-ms-request-server-encrypted": "true"}
            if not comp:
                import base64

                headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324
            self._reply(201 if not comp else 200, headers=headers)

    return BlobHandler


class BlobProxy:
    """An HTTPS proxy (CONNECT) whose only upstream is the in-memory :class:`BlobStore`."""

    def __init__(self, tls: ssl.SSLContext, store: BlobStore) -> None:
        self.store = store
        self.tunnels: list[str] = []
        proxy = self

        class ProxyHandler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_CONNECT(self) -> None:  # noqa: N802
                host = self.path.split(":")[0]
                proxy.tunnels.append(self.path)
                if not host.endswith(".blob.core.windows.net"):
                    self.send_response(403)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                try:
                    conn = tls.wrap_socket(self.connection, server_side=True)
                except (ssl.SSLError, OSError):
                    self.close_connection = True
                    return
                _handler(proxy.store, host)(conn, self.client_address, self.server)
                self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ProxyHandler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
