"""Shared by the personal-data source tests: the export's clock and the user a document is
built for.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from db.models import User
from portability.accounts import create_user

NOW = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


async def user_id_of(sessions: Any, email: str) -> uuid.UUID:
    async with sessions.begin() as db:
        user = await db.scalar(sa.select(User).where(User.email == email))
        if user is None:
            user, _ = await create_user(db, email)
        return user.id
