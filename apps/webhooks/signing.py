"""The `Atelier-Signature` header: Stripe's scheme, so receivers can reuse what they know.

    Atelier-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{raw_body}")>

Pure (no Django): receivers and tests import `verify_signature` as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "Atelier-Signature"
SCHEME = "v1"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh random secret (256 bits), prefixed so it is recognisable in a config file."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def compute(secret: str, timestamp: int, body: str | bytes) -> str:
    """The hex HMAC-SHA256 of `"<timestamp>.<body>"` under `secret` (its UTF-8 bytes)."""
    message = str(int(timestamp)).encode("ascii") + b"." + _as_bytes(body)
    return hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: str | bytes, timestamp: int | None = None) -> str:
    """The header value for `body` sent at `timestamp` (now by default)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},{SCHEME}={compute(secret, t, body)}"


def parse(header: str) -> tuple[int | None, list[str]]:
    """The timestamp and every v1 signature of a header (unknown schemes are ignored, so a
    future v2 can be sent beside v1)."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in (header or "").split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return None, []
        elif key == SCHEME:
            signatures.append(value.strip())
    return timestamp, signatures


def verify_signature(
    secret: str,
    header: str,
    body: str | bytes,
    tolerance: float = 300,
    *,
    now: float | None = None,
) -> bool:
    """True when `header` signs exactly `body` (the raw bytes received, before any JSON parsing)
    with `secret`, and its timestamp is within `tolerance` seconds of now (older ones may be
    replays). Compares in constant time."""
    timestamp, signatures = parse(header)
    if timestamp is None or not signatures:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = compute(secret, timestamp, body)
    return any(hmac.compare_digest(expected, s) for s in signatures)
