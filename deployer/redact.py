"""Hide credentials before they reach a message, a log line or JSON output.

Private indexes are commonly written ``https://user:token@host/simple``; such a line read from
a model's requirements.txt must never be echoed as is. Only the secret part is replaced, so
the message still tells the user *which* index, bucket or URL is meant. Also covered: conda
channel tokens (``/t/<token>/``), signed-URL query secrets (S3 pre-signed URLs, SAS tokens) and
the values of well-known secret environment variables (AWS, MLflow tracking).
"""

from __future__ import annotations

import os
import re

# scheme://userinfo@  (userinfo = anything but '/', '@' and whitespace)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s]+)@")
# anaconda.org-style channel tokens: https://host/t/<token>/channel
_PATH_TOKEN = re.compile(r"(?P<pre>://[^/\s]+/t/)[^/\s]+")
# signed-URL secrets in a query string: ...?X-Amz-Signature=..., &sig=..., &token=...
_QUERY_SECRET = re.compile(
    r"((?:X-Amz-(?:Signature|Credential|Security-Token)|Signature|sig|token|access_token)=)"
    r"[^&\s'\"]+",
    re.IGNORECASE,
)
# whose values are secrets wherever they appear (e.g. echoed back inside an SDK error)
_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)


def redact_text(text: str) -> str:
    """Redact URL userinfo, channel tokens, query secrets and secret env values in free text."""
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
    text = _PATH_TOKEN.sub(lambda m: f"{m.group('pre')}***", text)
    text = _QUERY_SECRET.sub(r"\1***", text)
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def redact_url(url: str) -> str:
    """``https://user:pw@host/x`` -> ``https://***@host/x``; URLs without secrets unchanged."""
    return redact_text(url)


def has_url_credentials(text: str) -> bool:
    """Whether ``text`` holds a URL with userinfo (``https://user:token@host``)."""
    return bool(_USERINFO.search(text))
