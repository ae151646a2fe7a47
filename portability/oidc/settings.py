"""The OIDC settings the dashboard and the API use, built from `[oidc]` at the edge."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str = ""
    name: str = ""
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    email_claim: str = "email"
    admin_claim: str = ""
    admin_values: tuple[str, ...] = ()
    auto_create_users: bool = False
    allow_api_key_signin: bool = True
    api_audience: str = ""
    clock_skew_seconds: int = 60

    def __post_init__(self) -> None:
        if not self.issuer or not self.client_id:
            raise ValueError("an OIDC provider needs an issuer and a client_id")
        if not 0 <= self.clock_skew_seconds <= 300:
            raise ValueError("clock_skew_seconds must be between 0 and 300")

    def __repr__(self) -> str:  # the secret never prints
        return f"OidcSettings(issuer={self.issuer!r}, client_id={self.client_id!r})"

    @property
    def display_name(self) -> str:
        return self.name or urlsplit(self.issuer).hostname or self.issuer
