"""What wheels leave to the operating system: shared libraries pip cannot install.

Most wheels carry their native libraries (``auditwheel`` vendors them into ``<pkg>.libs``), but
some link against a library every desktop has and a slim container image lacks. LightGBM's
wheel links ``libgomp.so.1`` (GNU OpenMP): on a Debian slim base the model fails to load with
``OSError: libgomp.so.1: cannot open shared object file``. The GUI builds of OpenCV need
``libGL.so.1`` and GLib.

Two tables, both Debian package names (what ``apt-get install`` takes on the Debian and Ubuntu
bases deployer builds on):

* :data:`BY_DISTRIBUTION`: a distribution in the image's requirements -> the packages it needs;
  the build plan adds them to the OS layer on its own (as it adds a JRE for JVM flavors), unless
  ``--no-auto-deps``;
* :data:`BY_SONAME`: a ``lib*.so*`` named in a "cannot open shared object file" error -> the
  package that provides it, for the hint of a failed verification (any wheel, not only those
  in the first table).

Measured, not guessed: each row of :data:`BY_DISTRIBUTION` is a wheel whose ``.so`` files had
an unresolved ``ldd`` dependency on the bare Debian base (the flavor corpus in the test suite
checks its images the same way).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from packaging.utils import canonicalize_name


@dataclass(frozen=True)
class SystemNeed:
    """OS packages a distribution needs, and why (shown in the plan)."""

    distribution: str
    packages: tuple[str, ...]
    reason: str

    def describe(self) -> str:
        return f"{', '.join(self.packages)}: {self.distribution} needs {self.reason}"


_GL = ("libgl1", "libglib2.0-0")
#: distribution -> (Debian packages, what they provide)
BY_DISTRIBUTION: Mapping[str, tuple[tuple[str, ...], str]] = {
    "lightgbm": (("libgomp1",), "GNU OpenMP (libgomp.so.1)"),
    "opencv-python": (_GL, "libGL.so.1 and GLib (the GUI build of OpenCV)"),
    "opencv-contrib-python": (_GL, "libGL.so.1 and GLib (the GUI build of OpenCV)"),
    "pyodbc": (("libodbc2",), "the unixODBC driver manager (libodbc.so.2)"),
    "pyaudio": (("libportaudio2",), "PortAudio (libportaudio.so.2)"),
}

#: shared object -> the Debian package that provides it
BY_SONAME: Mapping[str, str] = {
    "libgomp.so.1": "libgomp1",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libXext.so.6": "libxext6",
    "libXrender.so.1": "libxrender1",
    "libX11.so.6": "libx11-6",
    "libxcb.so.1": "libxcb1",
    "libgfortran.so.5": "libgfortran5",
    "libquadmath.so.0": "libquadmath0",
    "libopenblas.so.0": "libopenblas0",
    "libblas.so.3": "libblas3",
    "liblapack.so.3": "liblapack3",
    "libsndfile.so.1": "libsndfile1",
    "libportaudio.so.2": "libportaudio2",
    "libodbc.so.2": "libodbc2",
    "libpq.so.5": "libpq5",
    "libaio.so.1": "libaio1",
    "libgeos_c.so.1": "libgeos-c1v5",
    "libzmq.so.5": "libzmq5",
    "libcairo.so.2": "libcairo2",
    "libjpeg.so.62": "libjpeg62-turbo",
    "libpng16.so.16": "libpng16-16",
    "libtiff.so.6": "libtiff6",
    "libxml2.so.2": "libxml2",
    "libxslt.so.1": "libxslt1.1",
    "libgmp.so.10": "libgmp10",
    "libtbb.so.12": "libtbb12",
    "libnuma.so.1": "libnuma1",
    "libsqlite3.so.0": "libsqlite3-0",
    "libgraphviz.so": "libgvc6",
    "libavcodec.so.59": "libavcodec59",
    "libmagic.so.1": "libmagic1",
    "libusb-1.0.so.0": "libusb-1.0-0",
}

_MISSING_SO = re.compile(r"(lib[A-Za-z0-9_+.-]*?\.so(?:\.[0-9]+)*): cannot open shared object file")


def needs(distributions: Iterable[str]) -> tuple[SystemNeed, ...]:
    """The OS packages the named distributions need (table rows, in name order)."""
    out = []
    for name in sorted({canonicalize_name(d) for d in distributions}):
        row = BY_DISTRIBUTION.get(name)
        if row is not None:
            out.append(SystemNeed(name, row[0], row[1]))
    return tuple(out)


def missing_libraries(log: str) -> tuple[tuple[str, str | None], ...]:
    """``(soname, Debian package or None)`` for every "cannot open shared object file" in
    ``log``, first seen first."""
    seen: dict[str, str | None] = {}
    for soname in _MISSING_SO.findall(log):
        seen.setdefault(soname, BY_SONAME.get(soname))
    return tuple(seen.items())
