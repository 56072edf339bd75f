"""One POST to a receiver, refusing addresses a receiver must not have (SSRF).

Pure (no Django, no database): the delivery service passes the URL, body, headers and the one
setting, and records what comes back. The host is resolved once, every address is checked, and
the connection goes to the checked address (the TLS name and the Host header stay the URL's), so a
DNS answer that changes between the check and the connect (rebinding) cannot reach an internal
address. `http.client` never follows redirects: a 3xx is an answer like any other (not a 2xx).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEMES = ("http", "https")
READ_LIMIT = 4096  # bytes of the answer read; the log keeps the first 500 characters
BODY_KEPT = 500


class RefusedURL(ValueError):
    """A receiver URL that is never contacted: its scheme, or an address that is not public."""


@dataclass(frozen=True)
class PostResult:
    status_code: int | None
    response_body: str
    error: str
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def address_is_public(address: str) -> bool:
    """True for an address on the public internet; False for private, loopback, link-local
    (cloud metadata at 169.254.169.254), multicast, reserved, unspecified and shared (CGNAT)
    ones, also when written as IPv4-mapped IPv6."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_global) and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL's host when it may be a receiver as written (http(s), a host, a valid port, and
    no literal non-public address or `localhost` unless private ones are allowed). Names are
    checked again, resolved, at delivery time. Raises RefusedURL saying why."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedURL(f"Not a valid URL: {exc}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise RefusedURL("Only http:// and https:// receivers are allowed")
    host = parts.hostname or ""
    if not host:
        raise RefusedURL("The URL has no host")
    if port == 0:
        raise RefusedURL("The URL's port is not valid")
    if allow_private:
        return host
    if host == "localhost" or host.endswith(".localhost"):
        raise RefusedURL(f"{host} is this machine: receivers must be public addresses")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host  # a name: resolved and checked when it is called
    if not address_is_public(host):
        raise RefusedURL(f"{host} is not a public address: receivers must be public")
    return host


def resolve(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to: the host's first acceptable address. Raises RefusedURL when
    every address it resolves to is refused, OSError when it does not resolve."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise OSError(f"{host} has no address")
    if allow_private:
        return addresses[0]
    public = [a for a in addresses if address_is_public(a)]
    if not public:
        raise RefusedURL(
            f"{host} resolves to {addresses[0]}, which is not a public address "
            "(private addresses are refused unless ATELIER_WEBHOOKS_ALLOW_PRIVATE is set)"
        )
    return public[0]


class PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to an address checked beforehand; the Host header stays the URL's host."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address checked beforehand; the certificate is verified for the URL's host."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float = 10.0,
    allow_private: bool = False,
) -> PostResult:
    """POST `body` to `url` once. Never raises for a receiver's fault: the result says what the
    receiver answered, or `error` says why there was no answer."""
    started = time.monotonic()

    def done(status: int | None = None, text: str = "", error: str = "") -> PostResult:
        elapsed = (time.monotonic() - started) * 1000.0
        return PostResult(status, text[:BODY_KEPT], error[:2000], round(elapsed, 1))

    try:
        host = check_url(url, allow_private=allow_private)
        parts = urlsplit(url)
        https = parts.scheme.lower() == "https"
        port = parts.port or (443 if https else 80)
        address = resolve(host, port, allow_private=allow_private)
    except RefusedURL as exc:
        return done(error=f"Refused: {exc}")
    except OSError as exc:
        return done(error=f"Could not resolve the receiver's host: {exc}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cls = PinnedHTTPSConnection if https else PinnedHTTPConnection
    conn = cls(host, port, address=address, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read(READ_LIMIT).decode("utf-8", errors="replace")
        return done(response.status, text)
    except TimeoutError:
        return done(error=f"No answer within {timeout:g} s")
    except ssl.SSLError as exc:
        return done(error=f"TLS error: {exc}")
    except (OSError, http.client.HTTPException) as exc:
        return done(error=f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
