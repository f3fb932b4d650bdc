"""Traffic maps and blue/green names: pure functions, no SDK.

Azure ML routes an endpoint's requests by a traffic map ``{deployment: percent}``; a map is
valid when every value is an integer 0..100 and the values add up to 100 (or all are 0, an
endpoint that serves nothing). deployer's default rollout alternates two deployment names,
``blue`` and ``green``: the new model goes to whichever of the two is not serving, is
checked at 0 % and only then receives the traffic. Keeping this logic here, away from the
executor, lets it be tested exhaustively without any cloud.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from deployer.errors import UsageError

#: The two names the default rollout alternates between.
BLUE_GREEN = ("blue", "green")

#: Azure ML's rule for endpoint and deployment names (3-32 characters, a letter first,
#: letters, digits and dashes, no dash at the end).
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")


def check_name(value: str, *, kind: str, flag: str) -> str:
    """``value`` if it is a valid Azure ML endpoint/deployment name, else a UsageError."""
    if not _NAME.match(value or ""):
        raise UsageError(
            f"invalid {kind} name {value!r}",
            where=flag,
            fix="use 3-32 characters: a letter first, then letters, digits or '-' (not ending in "
            f"'-'), e.g. 'my-{kind}'",
        )
    return value


def parse_traffic(text: str, *, flag: str = "--traffic") -> dict[str, int]:
    """``"blue=90,green=10"`` -> ``{"blue": 90, "green": 10}`` (a valid map, else UsageError)."""
    result: dict[str, int] = {}
    for raw in (text or "").split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, pct = item.partition("=")
        name, pct = name.strip(), pct.strip()
        if not sep or not name or not pct:
            raise UsageError(
                f"bad traffic entry {item!r}",
                where=flag,
                fix="write NAME=PERCENT,... e.g. blue=90,green=10",
            )
        check_name(name, kind="deployment", flag=flag)
        if not pct.isdigit() or int(pct) > 100:
            raise UsageError(
                f"bad percentage {pct!r} for deployment {name!r}",
                where=flag,
                fix="use whole numbers from 0 to 100, e.g. blue=90,green=10",
            )
        if name.lower() in {k.lower() for k in result}:
            raise UsageError(
                f"deployment {name!r} appears twice", where=flag, fix="name each deployment once"
            )
        result[name] = int(pct)
    if not result:
        raise UsageError(
            "empty traffic map", where=flag, fix="write NAME=PERCENT,... e.g. blue=90,green=10"
        )
    check_total(result, where=flag)
    return result


def check_total(traffic: Mapping[str, int], *, where: str) -> None:
    total = sum(traffic.values())
    if total not in (0, 100):
        raise UsageError(
            f"traffic adds up to {total}%, not 100%: {format_traffic(traffic)}",
            where=where,
            fix="make the percentages add up to 100 (deployments left out get 0)",
        )


def format_traffic(traffic: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(traffic.items())) or "(none)"


def normalize(traffic: Mapping[str, int], deployments: list[str]) -> dict[str, int]:
    """Every known deployment in the map (absent ones at 0), keys in the order given."""
    lower = {k.lower(): int(v) for k, v in traffic.items()}
    return {name: lower.get(name.lower(), 0) for name in deployments}


def choose_deployment(traffic: Mapping[str, int], deployments: list[str]) -> str:
    """The blue/green name the next rollout should use.

    * no deployment yet -> ``blue``;
    * one of blue/green free -> the free one;
    * both exist -> the one receiving no traffic (it is the stale previous version);
    * both receive traffic (a manual split) -> refuse: replacing either would hit live users.
    """
    existing = {d.lower() for d in deployments}
    share = {k.lower(): int(v) for k, v in traffic.items()}
    free = [n for n in BLUE_GREEN if n not in existing]
    if len(free) == 2:
        return BLUE_GREEN[0]
    if free:
        return free[0]
    idle = [n for n in BLUE_GREEN if share.get(n, 0) == 0]
    if idle:
        # If both are idle, replace green only when blue is the more recent? We cannot tell
        # without timestamps here; keep it deterministic: the first idle name.
        return idle[0]
    raise UsageError(
        f"both 'blue' and 'green' receive traffic ({format_traffic(traffic)}); deployer will not "
        "replace a deployment that serves users",
        where="--deployment",
        fix="shift all traffic to one of them first (--traffic blue=100), or name a new deployment "
        "with --deployment",
    )


def shifted(
    current: Mapping[str, int],
    new: str,
    deployments: list[str],
    requested: Mapping[str, int] | None,
) -> dict[str, int]:
    """The traffic map to set after ``new`` passed its checks.

    Without ``--traffic`` all traffic moves to ``new``; with it, the requested map is used as
    given (deployments it leaves out get 0). Names must exist once ``new`` is created.
    """
    names = list(dict.fromkeys([*deployments, new]))
    known = {n.lower() for n in names}
    if requested:
        unknown = [k for k in requested if k.lower() not in known]
        if unknown:
            raise UsageError(
                f"--traffic names deployment(s) {', '.join(sorted(unknown))} that the endpoint "
                "will not have",
                where="--traffic",
                fix=f"use the deployments {', '.join(names)}",
            )
        check_total(requested, where="--traffic")
        return normalize(requested, names)
    return {n: (100 if n.lower() == new.lower() else 0) for n in names}
