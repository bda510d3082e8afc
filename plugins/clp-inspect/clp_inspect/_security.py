"""Safe by default: loopback unless a token is given, GET only, a strict Content-Security-Policy.

:class:`Guard` is plain ASGI middleware (it wraps streaming responses too). Every response
carries the security headers. Requests other than GET and HEAD get 405. Without a token the
``Host`` header must name this machine (a page elsewhere cannot reach the inspector through
DNS rebinding); with a token every request must carry it: ``?token=`` (answered by a redirect
to the same URL without it, and a cookie) or that cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import urllib.parse
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import Any

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
MIN_TOKEN_LENGTH = 16
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


class BindError(ValueError):
    """The address or token asked for is not safe to serve on."""


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``::1``."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token, and tokens too short to be one."""
    if token is not None:
        check_token(token)
    if not is_loopback(host) and not token:
        raise BindError(f"refusing to serve on {host}: beyond loopback (127.0.0.1, ::1, localhost) the page "
                        "shows untrusted data to anyone who can reach it; give --token (or CLP_INSPECT_TOKEN)")


def check_token(token: str) -> None:
    """A token is at least 16 URL-safe characters (it travels in URLs and a cookie)."""
    if len(token) < MIN_TOKEN_LENGTH or not _TOKEN_CHARS.fullmatch(token):
        raise BindError(f"the token must be at least {MIN_TOKEN_LENGTH} characters from A-Z a-z 0-9 - _ . ~ "
                        "(python -c 'import secrets; print(secrets.token_urlsafe())' makes one)")


def cookie_name(token: str) -> str:
    """Per token, so inspectors on several ports of one host (cookies ignore ports) coexist."""
    return "clp_inspect_" + hashlib.sha256(token.encode()).hexdigest()[:10]


def _host_name(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """ASGI middleware: methods, Host, token, security headers (see the module docstring)."""

    def __init__(self, app: Any, *, token: str | None = None, allowed_hosts: Iterable[str] | None = LOOPBACK_NAMES):
        if token is not None:
            check_token(token)
        self.app = app
        self.token = token
        self.cookie = cookie_name(token) if token else ""
        self.allowed_hosts = None if allowed_hosts is None else frozenset(h.lower().strip("[]") for h in allowed_hosts)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": [*headers, *SECURITY_HEADERS]}
            await send(message)

        if scope["method"] not in ("GET", "HEAD"):
            await _plain(send_secured, 405, "clp inspect is read-only: only GET and HEAD are allowed\n",
                         [(b"allow", b"GET, HEAD")])
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.token is None and self.allowed_hosts is not None:
            host = _host_name(headers.get("host", ""))
            if host not in self.allowed_hosts:
                await _plain(send_secured, 403, "unexpected Host header: open the page through 127.0.0.1\n")
                return
        if self.token is not None:
            query = urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            given = [v for k, v in query if k == "token"]
            if given:
                if not self._valid(given[-1]):
                    await _plain(send_secured, 403, "wrong token\n")
                    return
                rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "token"])
                location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
                cookie = f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                await _plain(send_secured, 303, "see other\n",
                             [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode("latin-1"))])
                return
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(headers.get("cookie", ""))
            except Exception:
                jar = SimpleCookie()
            morsel = jar.get(self.cookie)
            if morsel is None or not self._valid(morsel.value):
                await _plain(send_secured, 403, "this page needs its token: open the URL clp inspect printed\n")
                return
        await self.app(scope, receive, send_secured)

    def _valid(self, given: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(given.encode(), self.token.encode())


async def _plain(send: Any, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
               *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
