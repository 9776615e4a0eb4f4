"""Who may talk to the server and how much a request may carry.

Safe by default: the server binds to loopback, where no token is needed but the Host header
must name the loopback too (a web page elsewhere cannot reach it by DNS rebinding). Binding
to any other address needs a token, given or generated. A browser shows the token once in
`?token=`, which is swapped for an HttpOnly cookie; programs send `Authorization: Bearer`.
Request bodies (uploads) are capped while they stream in, before anything is parsed.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

TOKEN_ENV = "SEARCHENGINE_TOKEN"
COOKIE = "searchengine_token"
HEADER = "x-searchengine-token"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server on this machine."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_token(host: str, given: str | None) -> tuple[str | None, bool]:
    """The token requests must carry (None: none needed) and whether it was generated here.
    A token given is always required; off loopback one is made when none is given."""
    if given:
        return given, False
    if is_loopback(host):
        return None, False
    return secrets.token_urlsafe(24), True


def _host_name(value: str) -> str:
    """The host part of a Host header (`[::1]:8765`, `localhost:8765`, `127.0.0.1`)."""
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


async def send_json(send: Send, status: int, body: dict[str, Any], headers=()) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class Guard:
    """ASGI middleware: the token (when one is set) or a loopback Host (when none is)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    def _ok(self, candidate: str | None) -> bool:
        assert self.token is not None
        return candidate is not None and hmac.compare_digest(
            candidate.encode(), self.token.encode()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if self.token is None:
            if not is_loopback(_host_name(headers.get("host", ""))):
                await send_json(
                    send,
                    403,
                    {
                        "error": "this server answers to localhost only (start it with --token "
                        "to serve other hosts)"
                    },
                )
                return
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), True)
        in_url = next((v for k, v in query if k == "token"), None)
        bearer = headers.get("authorization", "")
        bearer = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
        found = [in_url, bearer, headers.get(HEADER), _cookie(headers.get("cookie", ""), COOKIE)]
        if not any(self._ok(c) for c in found):
            await send_json(
                send,
                401,
                {
                    "error": "a token is required: open the address 'searchengine serve' printed, "
                    "or send 'Authorization: Bearer TOKEN'"
                },
                headers=[(b"www-authenticate", b"Bearer")],
            )
            return
        if in_url is not None:
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            if scope.get("method") == "GET" and not scope["path"].startswith("/api/"):
                # a page opened from the printed address: keep the token in a cookie and
                # take it out of the address bar (and out of bookmarks and history)
                target = scope["path"] + (f"?{rest}" if rest else "")
                cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                await send(
                    {
                        "type": "http.response.start",
                        "status": 303,
                        "headers": [
                            (b"location", target.encode("latin-1")),
                            (b"set-cookie", cookie.encode("latin-1")),
                            (b"content-length", b"0"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
            scope = dict(scope, query_string=rest.encode("latin-1"))
        await self.app(scope, receive, send)


class SameOrigin:
    """ASGI middleware: refuse (403) what another site's page makes a browser send. The
    loopback server has no token, so without this any page the user visits could query it
    or fetch their files: a request whose `Origin` is neither this server's own nor a
    `--cors` one, or that the browser marks `Sec-Fetch-Site: cross-site` (from a `--cors`
    origin excepted), is refused. A link followed from elsewhere to the page itself (a GET
    navigation outside /api/) still opens it: the page shows nothing to the linking site."""

    def __init__(self, app: ASGIApp, cors: list[str] | None = None) -> None:
        self.app = app
        self.allowed = {o.rstrip("/").lower() for o in cors or ()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        origin = headers.get("origin")
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()
        allowed = origin is not None and origin.rstrip("/").lower() in self.allowed
        navigation = (
            scope.get("method") == "GET"
            and headers.get("sec-fetch-mode") == "navigate"
            and not scope["path"].startswith("/api/")
        )
        foreign_origin = origin is not None and origin.lower() != own and not allowed
        cross_site = headers.get("sec-fetch-site") == "cross-site" and not allowed
        if (foreign_origin or cross_site) and not navigation:
            await send_json(
                send,
                403,
                {"error": "requests from other sites' pages are refused (allow one with --cors)"},
            )
            return
        await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413, whether it says its size
    (Content-Length) or streams (chunked); nothing past the limit is read or stored."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, send: Send) -> None:
        mib = self.limit / (1 << 20)
        await send_json(send, 413, {"error": f"upload too large: at most {mib:g} MiB"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _headers(scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send)
            return
        seen = 0
        over = False
        started = False

        async def limited() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:  # the app answered a body it could not read whole: the answer is 413
                if not started:
                    started = True
                    await self._refuse(send)
                return
            started = message["type"] == "http.response.start" or started
            await send(message)

        try:
            await self.app(scope, limited, guarded_send)
        except _TooLarge:
            if not started:
                started = True
                await self._refuse(send)


PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self'; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
"""The page loads only its own files: nothing from elsewhere, no inline script."""


class SecurityHeaders:
    """ASGI middleware: no content sniffing, no framing, no referrer, no embedding by other
    sites (Cross-Origin-Resource-Policy), and the page's content
    policy on every answer that does not set a stricter one (media set a sandbox)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cross-origin-resource-policy", b"same-origin"),
                    (b"content-security-policy", PAGE_POLICY.encode()),
                ]
                headers += [(k, v) for k, v in extra if k not in names]
                message = dict(message, headers=headers)
            await send(message)

        await self.app(scope, receive, with_headers)
