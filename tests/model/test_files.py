"""One walk of the model directory for everything that ships a model."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from deployer.model.files import copy_model, iter_model_files, model_digest, write_model_archive


def _model(root: Path) -> Path:
    model = root / "m"
    (model / "code" / "__pycache__").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "code" / "mod.py").write_text("x = 1\n")
    (model / "code" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref")
    (model / "requirements.txt").write_text("--extra-index-url https://bot:s3cret@pkgs.example.org/simple\nx==1\n")
    return model


def test_the_image_copy_the_archives_and_the_digest_ship_the_same_bytes(tmp_path: Path) -> None:
    """The image's model layer, SageMaker's model.tar.gz, Azure's export and Spark's archive
    all use copy_model / write_model_archive over iter_model_files: same files, scrubbed."""
    model = _model(tmp_path)
    names = [rel for rel, _ in iter_model_files(model)]
    assert names == ["MLmodel", "requirements.txt", "code/mod.py"]  # top-down, sorted per folder
    copied = tmp_path / "copy"
    assert copy_model(model, copied) == names
    archive = write_model_archive(model, tmp_path / "model.tar.gz")
    with tarfile.open(archive) as tar:
        assert tar.getnames() == names
        shipped = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    for name in names:
        assert shipped[name] == (copied / name).read_bytes()
    assert b"s3cret" not in shipped["requirements.txt"]
    assert b"https://pkgs.example.org/simple" in shipped["requirements.txt"]
    assert write_model_archive(model, tmp_path / "again.tar.gz").read_bytes() == archive.read_bytes()
    digest = model_digest(model)
    (model / "code" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\1")  # does not ship
    assert model_digest(model) == digest
    (model / "requirements.txt").write_text("--extra-index-url https://bot:other@pkgs.example.org/simple\nx==1\n")
    assert model_digest(model) == digest  # only the credentials changed: the shipped bytes did not
    (model / "code" / "mod.py").write_text("x = 2\n")
    assert model_digest(model) != digest


def test_an_archive_holds_the_models_contents_at_its_root(tmp_path: Path) -> None:
    model = _model(tmp_path)
    data = write_model_archive(model, tmp_path / "a.tar.gz").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert all(m.mtime == 0 and m.uid == 0 and m.mode == 0o644 for m in tar.getmembers())
