"""Optional API-key authentication for the scoring server.

Off unless a key is configured (``--api-key-file`` or ``DEPLOYER_API_KEY``, see
:func:`deployer.serving.options.read_api_key`). Clients send ``Authorization: Bearer <key>``
or ``X-Api-Key: <key>``; the comparison is constant-time (``hmac.compare_digest``). Health
routes stay open by default (load balancers and SageMaker's /ping carry no credentials);
``--auth-exempt`` changes which. The key is never logged, echoed or put in an error.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

import orjson

UNAUTHORIZED_BODY = orjson.dumps(
    {
        "error_code": "UNAUTHENTICATED",
        "message": "This server requires an API key. Send it as 'Authorization: Bearer <key>' "
        "or 'X-Api-Key: <key>' (the key the server was started with: --api-key-file "
        "or DEPLOYER_API_KEY).",
    }
)
UNAUTHORIZED_HEADERS = ((b"www-authenticate", b'Bearer realm="deployer"'),)


class ApiKeyAuth:
    def __init__(self, key: bytes, exempt: Iterable[str]) -> None:
        self._key = key
        routes = list(exempt)
        self._exact = frozenset(r for r in routes if not r.endswith("*"))
        self._prefixes = tuple(r[:-1] for r in routes if r.endswith("*"))

    def __repr__(self) -> str:  # never show the key
        return f"ApiKeyAuth(exact={sorted(self._exact)}, prefixes={list(self._prefixes)})"

    def exempt(self, path: str) -> bool:
        return path in self._exact or (bool(self._prefixes) and path.startswith(self._prefixes))

    def allowed(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """Whether the request carries the key (every candidate header is compared)."""
        ok = False
        for name, value in headers:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    ok |= hmac.compare_digest(token.strip(), self._key)
            elif name == b"x-api-key":
                ok |= hmac.compare_digest(value.strip(), self._key)
        return ok
