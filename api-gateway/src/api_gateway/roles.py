"""Roles and the authenticated caller (``Principal``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Role(StrEnum):
    """Ordered roles: each one may do everything the ones below it may."""

    VIEWER = "viewer"
    TRADER = "trader"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, required: Role) -> bool:
        return self.rank >= required.rank


_RANK = {Role.VIEWER: 0, Role.TRADER: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (password → JWT) or an API key."""

    kind: Literal["user", "key"]
    name: str
    role: Role

    @property
    def subject(self) -> str:
        """Stable identity, sent to services as ``X-Tradebot-Subject`` and used as the rate-limit key."""
        return f"{self.kind}:{self.name}"
