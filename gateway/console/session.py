"""The console's session: a signed cookie, and the CSRF token every form carries.

What holds:
- The cookie is signed (itsdangerous) with a key derived from `GATEWAY_ADMIN_TOKEN`: every
  replica accepts every other's sessions, and changing the token signs everyone out.
- It is HttpOnly, SameSite=Strict, limited to `/console`, Secure when the request came over
  HTTPS (directly, or through a trusted proxy that says so), and expires after `SESSION_S`; an
  expired or tampered cookie is no session.
- Each session has an id; signing out records it in the store, so every replica refuses that
  cookie at once, though its signature is still good.
- Each session has its own random CSRF token: every POST must carry it (a form field or the
  `X-CSRF-Token` header) and, when the browser names an Origin, come from this host.
- A client key, or any Authorization header, opens nothing here: only the cookie does.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "gateway_console"
SESSION_S = 12 * 3600
# The signed-in session of a console request (set by the console's guard).
SESSION = web.RequestKey("console_session", object)
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Session:
    csrf: str
    sid: str


def _serializer(admin_token: str) -> URLSafeTimedSerializer:
    key = hmac.new(admin_token.encode(), b"gateway console session", hashlib.sha256).digest()
    return URLSafeTimedSerializer(key, salt="console-session")


def read_session(request: web.Request, admin_token: str) -> Session | None:
    """The request's session, if its cookie is signed with this token and not expired."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    try:
        data = _serializer(admin_token).loads(cookie, max_age=SESSION_S)
    except BadSignature:  # also SignatureExpired
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("csrf", "sid")):
        return None
    return Session(csrf=data["csrf"], sid=data["sid"])


def start_session(response: web.StreamResponse, admin_token: str, *, secure: bool) -> None:
    """Sign in: a new session (its id and CSRF token) in the response's cookie."""
    session = {"csrf": secrets.token_urlsafe(24), "sid": secrets.token_urlsafe(16)}
    value = _serializer(admin_token).dumps(session)
    response.set_cookie(
        COOKIE, value, max_age=SESSION_S, path="/console", httponly=True, samesite="Strict",
        secure=secure,
    )  # fmt: skip


def end_session(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/console")


def same_origin(request: web.Request) -> bool:
    """The browser, if it names where the request comes from, names this host."""
    origin = request.headers.get("Origin")
    # The host only: behind a proxy that ends TLS the scheme seen here is not the browser's.
    return origin is None or urlsplit(origin).netloc == request.host


def csrf_passes(request: web.Request, session: Session, submitted: str | None) -> bool:
    """A state-changing request carries this session's token and, if the browser says where it
    comes from, comes from this host."""
    if not same_origin(request):
        return False
    token = submitted or request.headers.get("X-CSRF-Token") or ""
    return hmac.compare_digest(token.encode(), session.csrf.encode())
