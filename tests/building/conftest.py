"""Session fixtures for image-builder tests on the real Docker engine.

Images are expensive (a cold dependency layer is ~1 minute here), so they are built once per
session and shared: ``sk_image`` is the sklearn fixture model *plus a requirement from a
private index whose URL carries a token*, built by the real CLI in a subprocess with a CA
bundle and proxy settings in its environment. The same image serves the functional tests,
the layer test and the secret scan, whose point is that none of those secrets got in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deployer.targets.base import DeployRequest
from deployer.targets.local import LocalTarget
from tests.building.pkgindex import PrivateIndex, make_wheel, start_index

MARKER = "proxy-marker-7f3a9c.invalid"


@dataclass(frozen=True)
class Secrets:
    token: str
    ca_pem_line: str  # one base64 line of a freshly generated CA certificate
    ca_bundle: Path
    proxy_marker: str
    env: dict[str, str]  # environment for the deployer subprocess

    def needles(self) -> list[str]:
        return [self.token, self.ca_pem_line, self.proxy_marker, str(self.ca_bundle)]


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    model_dir: Path
    output: str  # everything the CLI printed (stdout + stderr, -v)
    result: dict[str, object]


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A session-private wheel/lock cache (DEPLOYER_BUILD_CACHE) shared by every build."""
    path = tmp_path_factory.mktemp("build-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("DEPLOYER_BUILD_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def private_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateIndex]:
    root = tmp_path_factory.mktemp("private-index")
    dists = tmp_path_factory.mktemp("private-dists")
    index, server = start_index(root)
    index.add(make_wheel(dists, "tinypkg", "1.0", code="VALUE = 'from the private index'\n"))
    yield index
    server.shutdown()


def _make_ca(folder: Path) -> tuple[Path, str]:
    """A throwaway CA certificate appended to the host bundle (pip must still reach the index)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "deployer secret-scan test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    host_bundle = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
    bundle = folder / "corp-ca-bundle-5d1e.pem"
    bundle.write_text((host_bundle.read_text() if host_bundle.is_file() else "") + "\n" + pem)
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return bundle, body[1]


@pytest.fixture(scope="session")
def build_secrets(tmp_path_factory: pytest.TempPathFactory, private_index: PrivateIndex,
                  build_cache: Path) -> Secrets:
    folder = tmp_path_factory.mktemp("secrets")
    bundle, line = _make_ca(folder)
    docker_config = folder / "docker-config"
    docker_config.mkdir()
    # The docker CLI turns config.json proxies into build args: they must not reach the image.
    (docker_config / "config.json").write_text(json.dumps({"proxies": {"default": {"noProxy": MARKER}}}))
    env = {**os.environ, "PIP_CERT": str(bundle), "REQUESTS_CA_BUNDLE": str(bundle), "SSL_CERT_FILE": str(bundle),
           "no_proxy": MARKER, "NO_PROXY": MARKER, "DOCKER_CONFIG": str(docker_config),
           "DEPLOYER_BUILD_CACHE": str(build_cache)}
    return Secrets(token=private_index.token, ca_pem_line=line, ca_bundle=bundle, proxy_marker=MARKER, env=env)


def deployer_cli(args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from deployer.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def private_model(src: Path, dest: Path, index: PrivateIndex) -> Path:
    """A copy of ``src`` whose requirements.txt also needs tinypkg from the private index."""
    shutil.copytree(src, dest)
    reqs = dest / "requirements.txt"
    reqs.write_text(f"--extra-index-url {index.url}\n" + reqs.read_text().rstrip("\n") + "\ntinypkg==1.0\n")
    return dest


def build_with_cli(model: Path, tag: str, base_image: str, env: dict[str, str], *extra: str) -> BuiltImage:
    proc = deployer_cli(["build", "-m", str(model), "-t", tag, "--base-image", base_image, "--output", "json",
                         "-v", *extra], env)
    output = proc.stdout + "\n" + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return BuiltImage(tag=tag, model_dir=model, output=output, result=json.loads(proc.stdout))


# The sklearn image also has an OS layer (--system-package, apt in the build), so the secret
# scan covers that layer too; the retrained model uses the same options (shared env image).
SK_IMAGE_OPTIONS = ("--env", 'GREETING=say "hi" to $USER \\o/ ${HOME}', "--system-package", "libgomp1")


@pytest.fixture(scope="session")
def sk_model_dir(sklearn_model: Path, private_index: PrivateIndex, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return private_model(sklearn_model, tmp_path_factory.mktemp("sk") / "iris", private_index)


@pytest.fixture(scope="session")
def sk_image(docker_client, base_image: str, sk_model_dir: Path, build_secrets: Secrets) -> BuiltImage:  # type: ignore[no-untyped-def]
    return build_with_cli(sk_model_dir, "deployer-test/iris:1", base_image, build_secrets.env,
                          *SK_IMAGE_OPTIONS)


@pytest.fixture(scope="session")
def sk_image_retrained(sk_image: BuiltImage, base_image: str, build_secrets: Secrets, iris_data,  # type: ignore[no-untyped-def]
                       tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """The same model retrained (other hyper-parameters), same requirements."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    X, y = iris_data
    clf = LogisticRegression(max_iter=500, C=0.05).fit(X, y)
    path = tmp_path_factory.mktemp("sk2") / "iris_retrained"  # another name: the env image is still shared
    mlflow.sklearn.save_model(clf, str(path), signature=infer_signature(X, clf.predict(X)), input_example=X.head(3))
    for name in ("requirements.txt", "python_env.yaml", "conda.yaml"):
        shutil.copyfile(sk_image.model_dir / name, path / name)
    return build_with_cli(path, "deployer-test/iris:2", base_image, build_secrets.env, *SK_IMAGE_OPTIONS)


@pytest.fixture
def local_target(docker_client) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    target = LocalTarget(client=docker_client, ready_timeout=240)
    started: list[str] = []

    def run(image: str, name: str, serve_as: str = "local") -> str:
        plan = target.plan(DeployRequest(name=name, image_uri=image, options={"port": 0, "serve_as": serve_as}))
        started.append(name)
        return str(target.apply(plan).endpoint_url)

    yield run
    for name in started:
        target.delete(name)
