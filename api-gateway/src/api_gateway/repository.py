"""All SQL of the gateway: users, API keys and settings documents."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api_gateway.models import ApiKey, ApiUser, SettingsRecord


async def count_users(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(ApiUser)) or 0)


async def count_active_admins(session: AsyncSession) -> int:
    query = select(func.count()).select_from(ApiUser).where(ApiUser.role == "admin", ApiUser.disabled.is_(False))
    return int(await session.scalar(query) or 0)


async def user_by_name(session: AsyncSession, username: str) -> ApiUser | None:
    result = await session.scalar(select(ApiUser).where(ApiUser.username == username))
    return result


async def list_users(session: AsyncSession) -> Sequence[ApiUser]:
    return (await session.scalars(select(ApiUser).order_by(ApiUser.username))).all()


async def add_user(session: AsyncSession, user: ApiUser) -> None:
    session.add(user)
    await session.flush()


async def touch_user_login(session: AsyncSession, user_id: uuid.UUID, at: datetime) -> None:
    await session.execute(update(ApiUser).where(ApiUser.id == user_id).values(last_login_at=at))


async def key_by_prefix(session: AsyncSession, prefix: str) -> ApiKey | None:
    result = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    return result


async def key_by_id(session: AsyncSession, key_id: uuid.UUID) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def list_keys(session: AsyncSession, *, include_revoked: bool) -> Sequence[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.name)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return (await session.scalars(query)).all()


async def add_key(session: AsyncSession, key: ApiKey) -> None:
    session.add(key)
    await session.flush()


async def touch_key(session: AsyncSession, key_id: uuid.UUID, at: datetime) -> None:
    await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=at))


async def settings_by_name(session: AsyncSession, name: str) -> SettingsRecord | None:
    return await session.get(SettingsRecord, name)


async def save_settings(session: AsyncSession, record: SettingsRecord) -> None:
    session.add(record)
    await session.flush()
