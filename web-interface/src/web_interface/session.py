"""The login session: the gateway token and who it belongs to, in an encrypted cookie.

The cookie is a Fernet token (AES-CBC + HMAC, with its own timestamp) of a small JSON
document, so the browser can neither read the gateway token nor forge a session. It is
HttpOnly (page scripts never see it) and SameSite=Lax (other sites cannot post with it); forms
and the page's own fetches also carry a per-session CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken
from fastapi import Response

from common.settings import PLACEHOLDER_SECRETS, Environment
from web_interface.settings import WebInterfaceSettings

ROLES = ("viewer", "trader", "admin")
MAX_RECENT_JOBS = 5


@dataclass(frozen=True)
class Session:
    token: str
    username: str
    role: str
    expires_at: datetime
    csrf: str
    recent_jobs: tuple[str, ...] = field(default=())

    def has_role(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role) if self.role in ROLES else False

    @property
    def is_admin(self) -> bool:
        return self.has_role("admin")

    def with_job(self, job_id: str) -> Session:
        jobs = (job_id, *(j for j in self.recent_jobs if j != job_id))[:MAX_RECENT_JOBS]
        return replace(self, recent_jobs=jobs)

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


def new_session(token: str, username: str, role: str, expires_in: int, now: datetime) -> Session:
    return Session(
        token=token,
        username=username,
        role=role if role in ROLES else "viewer",
        expires_at=now + timedelta(seconds=max(expires_in, 0)),
        csrf=secrets.token_urlsafe(24),
    )


def session_key(settings: WebInterfaceSettings) -> bytes:
    """A Fernet key derived from the configured secret (or a random one in development)."""
    secret = settings.session_secret.get_secret_value()
    if secret.strip().lower() in PLACEHOLDER_SECRETS:
        if settings.environment not in (Environment.DEVELOPMENT, Environment.TEST):
            raise ValueError("WEB_INTERFACE_SESSION_SECRET is a placeholder; set a real secret")
        secret = secrets.token_urlsafe(32)
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


class SessionCookie:
    """Reads and writes the session cookie."""

    def __init__(self, settings: WebInterfaceSettings) -> None:
        self.name = settings.session_cookie
        self.secure = settings.cookie_secure
        self._fernet = Fernet(session_key(settings))

    def encode(self, session: Session) -> str:
        document = {
            "t": session.token,
            "u": session.username,
            "r": session.role,
            "e": int(session.expires_at.timestamp()),
            "c": session.csrf,
            "j": list(session.recent_jobs),
        }
        return self._fernet.encrypt(json.dumps(document, separators=(",", ":")).encode()).decode()

    def decode(self, value: str | None, now: datetime) -> Session | None:
        """The session, or None when the cookie is missing, tampered with or expired."""
        if not value:
            return None
        try:
            document = json.loads(self._fernet.decrypt(value.encode()))
            session = Session(
                token=str(document["t"]),
                username=str(document["u"]),
                role=str(document["r"]),
                expires_at=datetime.fromtimestamp(int(document["e"]), tz=UTC),
                csrf=str(document["c"]),
                recent_jobs=tuple(str(j) for j in document.get("j", []))[:MAX_RECENT_JOBS],
            )
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None
        return session if session.expires_at > now else None

    def set(self, response: Response, session: Session, now: datetime) -> None:
        response.set_cookie(
            self.name,
            self.encode(session),
            max_age=max(int((session.expires_at - now).total_seconds()), 0),
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(self.name, path="/", httponly=True, samesite="lax", secure=self.secure)
