"""Request and response models of the gateway's own routes."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from api_gateway.accounts import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from api_gateway.models import ApiKey, ApiUser
from api_gateway.roles import Role

USERNAME_PATTERN = r"^[A-Za-z0-9_.@-]{3,64}$"


class ErrorBody(BaseModel):
    error: str
    message: str
    detail: object | None = None


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 — the OAuth2 token type, not a secret
    expires_in: int = Field(description="seconds")
    role: Role


class Me(BaseModel):
    kind: str
    name: str
    role: Role


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN)
    password: SecretStr = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
    role: Role = Role.VIEWER


class UserView(BaseModel):
    username: str
    role: Role
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, user: ApiUser) -> UserView:
        return cls(
            username=user.username,
            role=Role(user.role),
            disabled=user.disabled,
            created_at=user.created_at,
            last_login_at=user.last_login_at,
        )


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"\S")
    role: Role = Role.VIEWER


class KeyView(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    role: Role
    created_at: datetime
    created_by: str | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyView:
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            role=Role(key.role),
            created_at=key.created_at,
            created_by=key.created_by,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
        )


class KeyCreated(KeyView):
    key: str = Field(description="the API key itself: shown only in this response, store it now")
