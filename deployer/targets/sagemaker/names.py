"""SageMaker resource names: validation of the user's names, generation of ours.

SageMaker names (endpoints, models, endpoint configs, transform jobs, variants) must match
``^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``: at most 63 characters, letters, digits and single or
repeated hyphens, starting and ending with a letter or digit. The endpoint name is the user's
handle on the deployment, so it is validated, never rewritten. Names deployer creates get a
suffix that is unique per run (content hash + random part), so a retried or concurrent deploy
never collides with, or deletes, another run's resources.
"""

from __future__ import annotations

import re
import secrets

from deployer.errors import UsageError

MAX_LEN = 63
_VALID = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_BAD_CHARS = re.compile(r"[^a-zA-Z0-9-]+")


def validate_name(name: str, *, what: str = "endpoint name", option: str = "--name") -> str:
    """Return ``name`` if SageMaker accepts it; otherwise a UsageError saying why and how."""
    if len(name) <= MAX_LEN and _VALID.match(name):
        return name
    if not name:
        problem = "is empty"
    elif len(name) > MAX_LEN:
        problem = f"is {len(name)} characters long (at most {MAX_LEN})"
    elif _BAD_CHARS.search(name):
        bad = "".join(sorted(set(_BAD_CHARS.findall(name)[0])))
        problem = f"contains {bad!r} (only letters, digits and '-' are allowed)"
    else:
        problem = "must start and end with a letter or digit"
    raise UsageError(
        f"{what} {name!r} {problem}",
        where=option,
        fix=f"use e.g. {suggest(name)!r}",
    )


def suggest(name: str) -> str:
    """A valid name close to ``name`` (for hints only)."""
    cleaned = _BAD_CHARS.sub("-", name).strip("-")[:MAX_LEN].strip("-")
    return cleaned or "my-endpoint"


def unique_suffix(config_hash: str) -> str:
    """8 hex chars of the deploy's content hash + 8 random hex chars, e.g. ``3fa2c1d0-9b1e07aa``
    (with 16 random bits, 50 names made from one config collided about 2% of the time)."""
    return f"{config_hash[:8]}-{secrets.token_hex(4)}"


def resource_name(app: str, kind: str, suffix: str) -> str:
    """``{app}-{kind}-{suffix}``, with ``app`` shortened so the whole fits in 63 characters."""
    tail = f"-{kind}-{suffix}"
    room = MAX_LEN - len(tail)
    head = suggest(app)[:room].rstrip("-") or "d"
    name = head + tail
    return validate_name(name, what=f"generated {kind} name")
