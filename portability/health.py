"""GET /api/health: whether the database and the storage backend answer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from portability.state import api_state


async def health(request: Request) -> Response:
    state = api_state(request)
    checks: dict[str, Any] = {}
    try:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = {"ok": True}
    except Exception as exc:  # any failure is "unhealthy", reported as such
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    try:
        await state.storage.ping()
        checks["storage"] = {"ok": True}
    except Exception as exc:
        checks["storage"] = {"ok": False, "error": str(exc) or type(exc).__name__}
    healthy = all(c["ok"] for c in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", **checks},
        status_code=200 if healthy else 503,
    )
