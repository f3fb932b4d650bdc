"""Build progress on stderr: a live rich status on a terminal, plain lines elsewhere.

Every line from pip and the engine reaches :meth:`Progress.line` already redacted. What is
shown depends on where stderr goes:

* a terminal (and not ``-q``): one live status line (spinner, elapsed time, current step);
  finished steps scroll above it;
* anything else (CI logs, files, ``-q`` off): one plain line per step, so logs stay short;
* ``-v``: every line of output, plain;
* ``-q``: nothing (errors still carry the tail of the output).
"""

from __future__ import annotations

import re
import sys
import time
from types import TracebackType
from typing import Any, TextIO

from rich.markup import escape

# A new step in the classic builder ("Step 3/12 : COPY ...") or BuildKit ("#7 [deps 2/3] RUN ...").
_STEP = re.compile(r"^(Step \d+/\d+ : |#\d+ \[[^\]]+\] )")


class Progress:
    def __init__(
        self, *, verbosity: int = 0, stream: TextIO | None = None, live: bool | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.verbosity = verbosity
        is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.live = (is_tty and verbosity == 0) if live is None else live
        self._status: Any = None
        self._console: Any = None
        self._t0 = time.monotonic()
        self.lines = 0

    def __enter__(self) -> Progress:
        if self.live:
            from rich.console import Console

            self._console = Console(file=self.stream, stderr=True)
            self._status = self._console.status("starting", spinner="dots")
            self._status.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def step(self, message: str) -> None:
        """A milestone of deployer's own (resolving, building, ...): always shown unless -q."""
        if self.verbosity < 0:
            return
        if self._console is not None:
            self._console.log(escape(message))
            self._status.update(escape(message))
        else:
            self.stream.write(f"{message}\n")
            self.stream.flush()

    def line(self, text: str) -> None:
        """One line of tool output (pip, docker build)."""
        self.lines += 1
        if self.verbosity < 0:
            return
        if self.verbosity > 0:
            self.stream.write(text + "\n")
            self.stream.flush()
            return
        if self._status is not None:
            elapsed = time.monotonic() - self._t0
            shown = text if len(text) < 100 else text[:97] + "..."
            self._status.update(f"[{elapsed:5.0f}s] {escape(shown)}")
            return
        if _STEP.match(text):
            self.stream.write(text[:200] + "\n")
            self.stream.flush()
