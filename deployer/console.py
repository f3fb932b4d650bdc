"""Output conventions shared by every command.

* ``--output json``: the command's result is one JSON document on stdout; nothing else goes
  to stdout. Logs, progress and warnings always go to stderr.
* ``--output text`` (default): a human rendering of the same result on stdout.
* ``-q`` shows only warnings and errors on stderr; ``-v`` adds debug logs (and tracebacks).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO

LOGGER_NAME = "deployer"
log = logging.getLogger(LOGGER_NAME)


def _default(obj: Any) -> Any:
    # to_dict first: it is where objects redact what must never be printed (credentials).
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=_default, sort_keys=False)


@dataclasses.dataclass
class Console:
    output: str = "text"  # "text" | "json"
    verbosity: int = 0  # -1 quiet, 0 normal, >=1 verbose
    stdout: TextIO = dataclasses.field(default_factory=lambda: sys.stdout)
    stderr: TextIO = dataclasses.field(default_factory=lambda: sys.stderr)

    @property
    def json(self) -> bool:
        return self.output == "json"

    def result(self, data: Any, text: Callable[[], str] | str | None = None) -> None:
        """Emit a command's result: JSON on stdout, or the text rendering."""
        if self.json:
            self.stdout.write(to_json(data) + "\n")
        else:
            rendered = text() if callable(text) else text
            if rendered is None:
                rendered = to_json(data)
            if rendered:
                self.stdout.write(rendered.rstrip("\n") + "\n")
        self.stdout.flush()

    def info(self, message: str) -> None:
        log.info(message)

    def warn(self, message: str) -> None:
        log.warning(message)


class _StderrFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"error: {msg}"
        if record.levelno >= logging.WARNING:
            return f"warning: {msg}"
        if record.levelno <= logging.DEBUG:
            return f"debug: {msg}"
        return msg


def configure_logging(verbosity: int, stream: TextIO | None = None) -> None:
    """Route deployer's logs to stderr at the level -q/-v ask for."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if getattr(handler, "_deployer", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_StderrFormatter())
    handler._deployer = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False
    if verbosity < 0:
        logger.setLevel(logging.WARNING)
    elif verbosity == 0:
        logger.setLevel(logging.INFO)
    else:
        logger.setLevel(logging.DEBUG)
