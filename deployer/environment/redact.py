"""Hide credentials in index URLs before they reach a message, a log line or JSON output.

Private indexes are commonly written ``https://user:token@host/simple``; such a line read from
a model's requirements.txt must never be echoed as is. Only the userinfo part is replaced, so
the message still tells the user *which* index is meant.
"""

from __future__ import annotations

import re

# scheme://userinfo@  (userinfo = anything but '/', '@' and whitespace)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s]+)@")
# anaconda.org-style channel tokens: https://host/t/<token>/channel
_PATH_TOKEN = re.compile(r"(?P<pre>://[^/\s]+/t/)[^/\s]+")


def redact_text(text: str) -> str:
    """Redact every URL userinfo (and ``/t/<token>/`` channel token) inside free text."""
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _PATH_TOKEN.sub(lambda m: f"{m.group('pre')}***", text)


def redact_url(url: str) -> str:
    """``https://user:pw@host/x`` -> ``https://***@host/x``; URLs without secrets unchanged."""
    return redact_text(url)
