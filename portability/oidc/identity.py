"""From a verified token's claims to a Ferry user: email, admin flag, the account itself.

A provider's users are Ferry's users by email (`[oidc] email_claim`). An email the provider
says it has not verified is refused: whoever can set an unverified email could otherwise take
over the account of its owner. With `admin_claim` set the provider decides who is an admin,
at every sign-in and on every bearer token; without it Ferry's own flag stands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import User
from portability.accounts import AccountError, create_user
from portability.oidc.exceptions import AccountRefused
from portability.oidc.settings import OidcSettings

SIGN_IN_METHODS = ("api_key", "oidc")


@dataclass(frozen=True)
class Identity:
    subject: str
    email: str
    name: str | None
    is_admin: bool | None  # None: the provider does not decide it (no admin_claim)


def identity_from_claims(claims: Mapping[str, Any], settings: OidcSettings) -> Identity:
    email = claims.get(settings.email_claim)
    if not isinstance(email, str) or "@" not in email:
        raise AccountRefused(
            f"the identity provider sent no email address (claim {settings.email_claim!r}); "
            "Ferry knows its users by email"
        )
    if claims.get("email_verified") is False:
        raise AccountRefused(f"the identity provider has not verified the address {email}")
    is_admin = None
    if settings.admin_claim:
        value = claims.get(settings.admin_claim)
        values = value if isinstance(value, list) else [value]
        is_admin = any(isinstance(v, str) and v in settings.admin_values for v in values)
    name = claims.get("name")
    return Identity(
        subject=str(claims.get("sub", "")),
        email=email.strip().lower(),
        name=name if isinstance(name, str) and name else None,
        is_admin=is_admin,
    )


async def account_for(db: AsyncSession, identity: Identity, settings: OidcSettings) -> User:
    """The identity's Ferry user, created when `auto_create_users` allows it."""
    user = await db.scalar(select(User).where(User.email == identity.email))
    if user is None:
        if not settings.auto_create_users:
            raise AccountRefused(
                f"there is no Ferry account for {identity.email}. Ask an administrator to "
                "create one (ferry users create EMAIL)."
            )
        try:
            user, _ = await create_user(db, identity.email, name=identity.name, with_key=False)
        except AccountError as exc:
            raise AccountRefused(str(exc)) from None
    if identity.is_admin is not None and user.is_admin != identity.is_admin:
        user.is_admin = identity.is_admin
    return user


def record_sign_in(user: User, method: str, now: datetime) -> None:
    """What the admin console shows: how the user last signed in, and when."""
    assert method in SIGN_IN_METHODS
    user.last_sign_in_method = method
    user.last_sign_in_at = now
