"""The dashboard's cookies: a session, and a short-lived login cookie (OAuth state, form token).

Both are Fernet tokens (AES-CBC with an HMAC-SHA256, from ``cryptography``, already a
dependency): signed so that nobody can forge a session, and encrypted because a GitHub user's
session holds their access token, which the browser has no business reading. Fernet tokens carry
their issue time, so an old cookie is refused however the browser kept it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

__all__ = ["SessionCodec", "derive_key"]

_LABEL = b"aigateway dashboard session v1"


def derive_key(secret: SecretStr) -> bytes:
    """A Fernet key from a secret of any length (HMAC-SHA256 under a fixed label)."""
    digest = hmac.new(secret.get_secret_value().encode("utf-8"), _LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest)


class SessionCodec:
    """Turns a small JSON object into a cookie value and back, refusing anything too old."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def encode(self, data: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(data, separators=(",", ":")).encode()).decode()

    def decode(self, value: str | None, *, max_age_s: float) -> dict[str, Any] | None:
        """The object, or None for a missing, forged, corrupted or expired cookie."""
        if not value:
            return None
        try:
            raw = self._fernet.decrypt(value.encode("ascii"), ttl=int(max_age_s))
            data = json.loads(raw)
        except (InvalidToken, UnicodeEncodeError, ValueError):
            return None
        return data if isinstance(data, dict) else None
