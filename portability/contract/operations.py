"""An operation, declared once: its route, its handler, and what the document says of it.

`Operation.route()` is what the app serves and `portability.contract.document` turns the
same list into the OpenAPI document, so a route cannot exist undocumented. The errors an
operation answers with follow from what it is (authenticated, admin, with a body); `errors`
names only the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from portability.contract.base import Body
from portability.http import Handler, authed

Json = dict[str, Any]
Access = Literal["public", "user", "admin"]

# Every error answer, by the name the document's components give it.
ERROR_STATUS = {
    "BadJson": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "Conflict": 409,
    "TooLarge": 413,
    "Invalid": 422,
    "TooMany": 429,
}


@dataclass(frozen=True)
class Reply:
    """One answer of an operation: its body's model (None: no body) and what it means.

    `links`: name → (operationId, its parameter, JSON pointer into this answer's body).
    """

    model: type[BaseModel] | None
    description: str
    links: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    media_type: str = "application/json"


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    where: Literal["path", "query"] = "path"
    schema: Json = field(default_factory=lambda: {"type": "string", "minLength": 1})


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    handler: Handler | Callable[[Request], Awaitable[Response]]
    replies: dict[int, Reply]
    errors: tuple[str, ...] = ()
    access: Access = "user"
    body: tuple[type[Body], ...] = ()  # more than one: any of them
    body_required: bool = True
    parameters: tuple[Param, ...] = ()
    description: str | None = None

    def error_names(self) -> list[str]:
        names = list(self.errors)
        if self.access != "public":
            names += ["Unauthorized", "TooMany"]
        if self.access == "admin":
            names.append("Forbidden")
        if self.body:
            names += ["BadJson", "TooLarge", "Invalid"]
        return sorted(set(names), key=ERROR_STATUS.__getitem__)

    def route(self) -> Route:
        if self.access == "public":
            endpoint: Any = self.handler
        else:
            endpoint = authed(self.handler, admin=self.access == "admin")  # type: ignore[arg-type]
        return Route(self.path, endpoint, methods=[self.method.upper()], name=self.operation_id)
