"""Sign-in for the viewer: an API key becomes a signed, HttpOnly, SameSite=Strict session cookie.

The cookie holds the key's id, the session's random nonce and its expiry, signed with
HMAC-SHA-256 under the server's viewer secret; never the key itself. Each request checks
the signature and the expiry, then reads the key's row again (through a few seconds' cache),
so a revoked key ends its sessions. Every form post carries a CSRF token, an HMAC of the
session nonce, compared in constant time; the sign-in form is protected the same way by a
short-lived pre-session cookie.

Replicas behind one load balancer must share the secret (``EXECORD_UI_SECRET``); without
one the server draws a random secret at start, and a restart signs everyone out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import ExecordError
from ..store._keys import Principal, Recent

COOKIE = "execord_session"
PRE_COOKIE = "execord_signin"
SESSION_S = 12 * 3600
_PRE_S = 3600
_KEY_TTL_S = 2.0


class SignInRequired(ExecordError):
    """No valid session: the viewer answers with the sign-in page."""

    status = 401
    type = "signin-required"


class CsrfRefused(ExecordError):
    """A form post without the session's CSRF token."""

    status = 403
    type = "csrf"


@dataclass(frozen=True)
class Viewer(Principal):
    """Who is signed in (a key, as through the API) and the session's CSRF token."""

    csrf: str = ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Signs and opens session cookies and CSRF tokens with one secret."""

    def __init__(self, store: Any, secret: bytes | None = None):
        self.store = store
        self.secret = secret or secrets.token_bytes(32)
        self._recent = Recent(_KEY_TTL_S)

    @classmethod
    def from_env(cls, store: Any, secret: str | bytes | None = None) -> Sessions:
        """With ``secret``, else ``EXECORD_UI_SECRET``, else a random one."""
        value = secret if secret is not None else (os.environ.get("EXECORD_UI_SECRET") or None)
        if isinstance(value, str):
            value = value.encode()
        if value is not None and len(value) < 16:
            from ..errors import ConfigError

            raise ConfigError("EXECORD_UI_SECRET must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return cls(store, hashlib.sha256(value).digest() if value else None)

    def _mac(self, purpose: str, payload: bytes) -> bytes:
        return hmac.new(self.secret, purpose.encode() + b"\0" + payload, hashlib.sha256).digest()

    # -- sessions -------------------------------------------------------------------------------

    def issue(self, key_row: dict[str, Any], now: float | None = None) -> str:
        """The cookie value of a new session for this key."""
        payload = orjson.dumps({"k": key_row["id"], "n": secrets.token_urlsafe(16),
                                "e": int((now or time.time()) + SESSION_S)})
        return f"{_b64(payload)}.{_b64(self._mac('session', payload))}"

    def open(self, cookie: str | None, now: float | None = None) -> Viewer:
        """The viewer of a session cookie.

        Raises:
            SignInRequired: no cookie, a bad signature, an expired session, or a key that is
                revoked or lacks the read scope.
        """
        if not cookie or len(cookie) > 1000 or cookie.count(".") != 1:
            raise SignInRequired("sign in with an API key to use the viewer")
        body, _, mac = cookie.partition(".")
        try:
            payload, tag = _unb64(body), _unb64(mac)
            fields = orjson.loads(payload)
            key_id, nonce, expires = str(fields["k"]), str(fields["n"]), int(fields["e"])
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            raise SignInRequired("the session cookie is not one this server issued; sign in again") from None
        if not hmac.compare_digest(tag, self._mac("session", payload)):
            raise SignInRequired("the session cookie is not one this server issued; sign in again")
        if (now or time.time()) >= expires:
            raise SignInRequired("the session has expired; sign in again")
        row = self._key(key_id)
        if row is None or row.get("revoked_at"):
            raise SignInRequired("the API key of this session was revoked; sign in with another key")
        scopes = frozenset(row["scopes"])
        if not ({"read", "admin"} & scopes):
            raise SignInRequired("the API key of this session lacks the read scope")
        return Viewer(key_id, row["project"], scopes, row.get("name") or key_id, self.csrf_of(nonce))

    def _key(self, key_id: str) -> dict[str, Any] | None:
        return self._recent.get(key_id, lambda: self._row(key_id))  # type: ignore[no-any-return]

    def _row(self, key_id: str) -> dict[str, Any] | None:
        try:
            return self.store.get_key(key_id)  # type: ignore[no-any-return]
        except ExecordError:
            return None

    def forget(self) -> None:
        """Drop the cached key rows (a key was revoked through this server)."""
        self._recent.forget()

    # -- CSRF -----------------------------------------------------------------------------------

    def csrf_of(self, nonce: str) -> str:
        """The CSRF token of a session (or of a sign-in form) nonce."""
        return _b64(self._mac("csrf", nonce.encode()))

    def check_csrf(self, expected: str, given: str | None) -> None:
        """Raises `CsrfRefused` unless ``given`` is ``expected``."""
        if not given or not hmac.compare_digest(expected.encode(), given.encode()):
            raise CsrfRefused("this form has expired or did not come from this page; reload the page and try again")

    def signin_nonce(self) -> str:
        """A new nonce for the pre-session cookie of the sign-in form."""
        return secrets.token_urlsafe(16)
