"""The answers every operation shares: errors, and the health check."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from portability.contract.base import Answer


class ErrorDetail(Answer):
    code: Annotated[
        str,
        Field(
            description="Stable: bad_request, unauthorized, forbidden, not_found, "
            "method_not_allowed, conflict, invalid, internal."
        ),
    ]
    message: Annotated[str, Field(description="For people; may change.")]


class Error(Answer):
    """Every error the API answers with."""

    error: ErrorDetail


class Check(Answer):
    ok: bool
    error: str | None = None


class Health(Answer):
    status: Literal["ok", "unavailable"]
    database: Check
    storage: Check
