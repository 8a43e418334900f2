"""Password hashes, bearer / basic credentials, signed session cookies and their CSRF tokens."""
from __future__ import annotations

import base64

from radroute.routing.config import WebConfig, WebUser
from radroute.web.auth import Authenticator, Identity, hash_password, verify_password

TOKEN = "a-token-of-twenty-chars"


def authenticator(key: bytes = b"k" * 32, **kwargs) -> Authenticator:
    users = (WebUser(name="ana", password_hash=hash_password("pw ana", iterations=100_000)),)
    return Authenticator(WebConfig(token=TOKEN, users=users, **kwargs), key)


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def test_password_hashes():
    encoded = hash_password("s3cret", iterations=100_000, salt="pepper")
    assert encoded.startswith("pbkdf2_sha256$100000$pepper$") and verify_password("s3cret", encoded)
    assert not verify_password("s3cret ", encoded) and not verify_password("s3cret", "md5$x")
    assert hash_password("s3cret", iterations=100_000) != encoded  # a fresh salt each time


def test_header_credentials():
    auth = authenticator()
    assert auth.identify(f"Bearer {TOKEN}", None) == Identity("token", "bearer")
    assert auth.identify(f"Bearer {TOKEN}0", None) is None and auth.identify("Bearer ", None) is None
    assert auth.identify(basic("ana", "pw ana"), None) == Identity("ana", "basic")
    assert auth.identify(basic("ana", "pw"), None) is None and auth.identify(basic("bob", "pw ana"), None) is None
    assert auth.identify("Basic not-base64!", None) is None
    cookie = auth.session_cookie("ana")
    assert auth.identify(f"Digest {TOKEN}", cookie) is None  # a wrong header never falls back to the cookie
    assert auth.login("", TOKEN) == "token" and auth.login("ana", "pw ana") == "ana"
    assert auth.login("ana", TOKEN) is None and auth.login("", "pw ana") is None


def test_sessions():
    auth = authenticator(session_hours=1.0)
    cookie = auth.session_cookie("ana", now=1000.0)
    assert auth.check_session(cookie, now=1000.0 + 3599) == "ana"
    assert auth.check_session(cookie, now=1000.0 + 3601) is None  # expired
    body, _, signature = cookie.rpartition(".")
    forged = base64.urlsafe_b64encode(b"token").decode() + body[body.index("."):]
    assert auth.check_session(f"{forged}.{signature}", now=1000.0) is None
    assert authenticator(key=b"x" * 32).check_session(cookie, now=1000.0) is None  # a restart's new key
    gone = Authenticator(WebConfig(token=TOKEN), b"k" * 32)
    assert gone.check_session(cookie, now=1000.0) is None  # ana was removed from the config


def test_csrf_tokens_go_with_the_session():
    auth = authenticator()
    cookie = auth.session_cookie("ana")
    session = auth.identify(None, cookie)
    assert session == Identity("ana", "cookie", cookie)
    assert auth.check_csrf(session, auth.csrf_token(cookie))
    assert not auth.check_csrf(session, None) and not auth.check_csrf(session, auth.csrf_token(cookie + "x"))
    other = auth.session_cookie("ana")
    assert not auth.check_csrf(session, auth.csrf_token(other))
    assert auth.check_csrf(Identity("token", "bearer"), None)  # a header cannot be forged cross-site
