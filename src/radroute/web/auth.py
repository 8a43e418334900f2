"""Who may use the web page: a bearer token, named users with PBKDF2 password hashes, sessions.

Credentials are checked on every request but ``GET /healthz``:

* ``Authorization: Bearer <token>`` (``[web] token``), for scripts and the HTML pages alike;
* ``Authorization: Basic`` with a ``[[web.users]]`` name and password;
* the session cookie the login form sets (signed with a key made when the service starts, so a
  restart signs everyone out). State-changing requests authenticated by the cookie must carry
  its CSRF token (``X-CSRF-Token`` header or ``csrf`` form field): a page on another site can make
  the browser send the cookie, never read the token.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from radroute.routing.config import PASSWORD_HASH, WebConfig

#: PBKDF2-SHA256 iterations of new password hashes (OWASP's 2023 advice)
PBKDF2_ITERATIONS = 600_000
SESSION_COOKIE = "radroute_session"
#: the principal of requests authenticated by the shared token
TOKEN_PRINCIPAL = "token"


def hash_password(password: str, iterations: int = PBKDF2_ITERATIONS, salt: str | None = None) -> str:
    """``pbkdf2_sha256$<iterations>$<salt>$<base64 hash>`` (Django's format), for ``[[web.users]]``."""
    salt = salt or secrets.token_urlsafe(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches an encoded hash (constant-time comparison)."""
    found = PASSWORD_HASH.match(encoded)
    if not found:
        return False
    iterations, salt, expected = int(found.group(1)), found.group(2), found.group(3)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return hmac.compare_digest(base64.b64encode(digest).decode(), expected)


@dataclass(frozen=True)
class Identity:
    """Who made a request and how (``via``: ``bearer``, ``basic`` or ``cookie``)."""

    principal: str
    via: str
    session: str | None = None


class Authenticator:
    """Checks requests' credentials against ``[web]``; signs and checks session cookies."""

    def __init__(self, cfg: WebConfig, key: bytes | None = None):
        self.token = cfg.token
        self.users = {u.name: u.password_hash for u in cfg.users}
        self.session_seconds = cfg.session_hours * 3600
        self._key = key or secrets.token_bytes(32)
        #: (name, sha256 of password) pairs verified already: PBKDF2 once per user, not per request
        self._verified: set[tuple[str, bytes]] = set()

    # ---- credentials -------------------------------------------------------------------------
    def check_token(self, token: str) -> bool:
        return bool(self.token) and hmac.compare_digest(token.encode(), self.token.encode())

    def check_user(self, name: str, password: str) -> bool:
        encoded = self.users.get(name)
        if encoded is None:
            return False
        key = (name, hashlib.sha256(password.encode()).digest())
        if key in self._verified:
            return True
        if verify_password(password, encoded):
            self._verified.add(key)
            return True
        return False

    def login(self, name: str, password: str) -> str | None:
        """The principal for a login form: a user's name and password, or (no name) the token."""
        if not name and self.check_token(password):
            return TOKEN_PRINCIPAL
        return name if name and self.check_user(name, password) else None

    def identify(self, authorization: str | None, cookie: str | None) -> Identity | None:
        """The request's identity from its ``Authorization`` header or session cookie, else ``None``."""
        scheme, _, value = (authorization or "").partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            return Identity(TOKEN_PRINCIPAL, "bearer") if self.check_token(value) else None
        if scheme.lower() == "basic" and value:
            try:
                name, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return Identity(name, "basic") if self.check_user(name, password) else None
        if authorization:
            return None
        principal = self.check_session(cookie) if cookie else None
        return Identity(principal, "cookie", cookie) if principal else None

    # ---- sessions ----------------------------------------------------------------------------
    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def session_cookie(self, principal: str, now: float | None = None) -> str:
        """A signed cookie value: principal, expiry and a nonce."""
        expires = int((now or time.time()) + self.session_seconds)
        who = base64.urlsafe_b64encode(principal.encode()).decode()
        body = f"{who}.{expires}.{secrets.token_urlsafe(12)}"
        return f"{body}.{self._sign(body)}"

    def check_session(self, cookie: str, now: float | None = None) -> str | None:
        """The principal of a valid, unexpired session cookie."""
        body, _, signature = cookie.rpartition(".")
        if not body or not hmac.compare_digest(self._sign(body), signature):
            return None
        who, expires, _ = (body.split(".") + ["", ""])[:3]
        try:
            if int(expires) < (now or time.time()):
                return None
            principal = base64.urlsafe_b64decode(who.encode()).decode()
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        if principal != TOKEN_PRINCIPAL and principal not in self.users:
            return None  # a user removed from the config since
        return principal

    def csrf_token(self, session: str) -> str:
        """The CSRF token that goes with a session cookie."""
        return self._sign("csrf:" + session)

    def check_csrf(self, identity: Identity, token: str | None) -> bool:
        """Requests authenticated by a header need none; cookie sessions need their token."""
        if identity.via != "cookie":
            return True
        return bool(token) and hmac.compare_digest(self.csrf_token(identity.session or ""), token)


__all__ = ["Authenticator", "Identity", "PBKDF2_ITERATIONS", "SESSION_COOKIE", "TOKEN_PRINCIPAL",
           "hash_password", "verify_password"]
