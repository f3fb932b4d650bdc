"""The model as SageMaker receives it: a reproducible ``model.tar.gz`` of the model directory.

SageMaker extracts ``ModelDataUrl`` into ``/opt/ml/model``, so the archive holds the model
directory's *contents* at its root: exactly what ships (:mod:`deployer.model.files`: the same
files, refusals and credential scrubbing as the image's model layer), byte-for-byte
reproducible, so the same model always uploads the same object. Its digest is
:func:`deployer.model.files.model_digest`, computed from the files, so idempotence checks never
need to build the archive.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from deployer.model.files import write_model_archive


def archive_bytes(model_dir: Path) -> bytes:
    """The archive in memory (tests and small models)."""
    with tempfile.TemporaryDirectory() as tmp:
        return write_model_archive(model_dir, Path(tmp) / "model.tar.gz").read_bytes()
