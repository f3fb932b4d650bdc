"""A tiny private package index (PEP 503 simple API) on 127.0.0.1, for builder tests.

It requires HTTP basic auth with a random token, like a corporate index, and serves packages
made here: pure wheels, and an sdist-only package whose build backend is in the sdist itself
(so building it needs no network). Tests use it to check that credentials reach pip on the
host and nowhere else.
"""

from __future__ import annotations

import base64
import hashlib
import io
import secrets
import tarfile
import textwrap
import threading
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def make_wheel(folder: Path, name: str, version: str, code: str = "VALUE = 1\n",
               requires: tuple[str, ...] = ()) -> Path:
    """A minimal valid pure-Python wheel ``name-version-py3-none-any.whl`` (``requires``: its
    Requires-Dist lines)."""
    mod = name.replace("-", "_")
    dist = f"{mod}-{version}"
    deps = "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{mod}/__init__.py": code.encode(),
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{deps}".encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: deployer-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    out = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return out


_BACKEND = textwrap.dedent('''
    """In-tree PEP 517 backend: builds a pure wheel with the standard library only."""
    import base64, hashlib, os, zipfile

    NAME, VERSION = "{name}", "{version}"
    MOD = NAME.replace("-", "_")

    def get_requires_for_build_wheel(config_settings=None):
        return []

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        dist = MOD + "-" + VERSION
        files = {{
            MOD + "/__init__.py": open(os.path.join(MOD, "__init__.py"), "rb").read(),
            dist + ".dist-info/METADATA": ("Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n" % (NAME, VERSION)).encode(),
            dist + ".dist-info/WHEEL": b"Wheel-Version: 1.0\\nGenerator: inline\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
        }}
        record = []
        for path, data in files.items():
            d = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append("%s,sha256=%s,%d" % (path, d, len(data)))
        record.append(dist + ".dist-info/RECORD,,")
        files[dist + ".dist-info/RECORD"] = ("\\n".join(record) + "\\n").encode()
        name = dist + "-py3-none-any.whl"
        with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
            for path, data in files.items():
                zf.writestr(path, data)
        return name

    def get_requires_for_build_sdist(config_settings=None):
        return []
''')


def make_sdist(folder: Path, name: str, version: str) -> Path:
    """An sdist with an in-tree stdlib-only backend (builds offline into a pure wheel)."""
    mod = name.replace("-", "_")
    base = f"{mod}-{version}"
    files = {
        f"{base}/pyproject.toml": (
            '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\n'),
        f"{base}/backend.py": _BACKEND.format(name=name, version=version),
        f"{base}/{mod}/__init__.py": "SDIST = True\n",
        f"{base}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }
    out = folder / f"{base}.tar.gz"
    with tarfile.open(out, "w:gz") as tf:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out


@dataclass
class PrivateIndex:
    root: Path
    user: str
    token: str
    port: int = 0
    requests: int = 0
    unauthorized: int = 0

    @property
    def url(self) -> str:
        """The index URL WITH credentials, as a model's requirements.txt would carry it."""
        return f"http://{self.user}:{self.token}@127.0.0.1:{self.port}/simple"

    def add(self, path: Path) -> None:
        (self.root / path.name).write_bytes(path.read_bytes())


def start_index(root: Path) -> tuple[PrivateIndex, ThreadingHTTPServer]:
    index = PrivateIndex(root=root, user="ci-bot", token="tok-" + secrets.token_hex(16))
    expected = "Basic " + base64.b64encode(f"{index.user}:{index.token}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            index.requests += 1
            if self.headers.get("Authorization") != expected:
                index.unauthorized += 1
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="private"')
                self.end_headers()
                return
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if parts[:1] == ["simple"] and len(parts) == 2:
                project = parts[1].lower().replace("_", "-")
                links = []
                for f in sorted(root.iterdir()):
                    norm = f.name.split("-")[0].lower().replace("_", "-")
                    if norm == project:
                        digest = hashlib.sha256(f.read_bytes()).hexdigest()
                        links.append(f'<a href="/files/{f.name}#sha256={digest}">{f.name}</a>')
                if not links:
                    self.send_response(404)
                    self.end_headers()
                    return
                self._send(("<html><body>" + "\n".join(links) + "</body></html>").encode(), "text/html")
            elif parts[:1] == ["files"] and len(parts) == 2 and (root / parts[1]).is_file():
                self._send((root / parts[1]).read_bytes(), "application/octet-stream")
            else:
                self.send_response(404)
                self.end_headers()

        def _send(self, body: bytes, ctype: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    index.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return index, server
