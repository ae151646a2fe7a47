"""The base of every API model, and the translation of a failed validation into one sentence.

A body model names, beside each field, the sentence a person reads when the field is wrong
(`Says`); pydantic's own error text never reaches a client. A validator that knows better
raises `refuse(message)`, whose message is used as it is, or `refuse(message, status=400)`
for a body that parses but means something else than it says.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

Loc = tuple[int | str, ...]
_REFUSED = "ferry_refused"  # the error type of `refuse`; its context carries the status


@dataclass(frozen=True)
class Says:
    """The sentence a person reads when this field fails its type or shape check."""

    message: str


class Refused(Exception):
    """A body that failed its model: the one sentence to answer with, and its status."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def refuse(message: str, *, status: int = 422) -> PydanticCustomError:
    """For a validator to raise: `message` reaches the client as it is."""
    return PydanticCustomError(_REFUSED, message, {"status": status})


class Body(BaseModel):
    """A request body: a JSON object, no unknown fields, no coercion ("3" is not 3).

    `not_an_object` and `unknown_fields` are the sentences for the object as a whole; a
    nested object overrides them (its field's `Says` covers a missing or non-object value).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    not_an_object: ClassVar[str] = "the body must be a JSON object"
    unknown_fields: ClassVar[str] = "unknown field(s): {names}"


class Answer(BaseModel):
    """What an answer holds, for the document: the services build the JSON itself."""

    model_config = ConfigDict(frozen=True)


M = TypeVar("M", bound=Body)


def parse(model: type[M], data: Any) -> M:
    """`data` (decoded JSON) as `model`, or `Refused` with the one sentence that says why."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _refusal(model, exc.errors(include_url=False, include_input=False)) from None


def _refusal(model: type[Body], errors: Sequence[ErrorDetails]) -> Refused:
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    shallowest = min((len(e["loc"]) for e in unknown), default=None)
    # Unknown names come first, as a list: the likeliest cause is a misspelt field.
    if shallowest == 1 or (unknown and not _field_errors(errors)):
        return _unknown(model, [e for e in unknown if len(e["loc"]) == shallowest])
    first = next(e for e in errors if e["type"] != "extra_forbidden")
    if first["type"] == _REFUSED:
        return Refused(first["msg"], (first.get("ctx") or {}).get("status", 422))
    parent = first["loc"][:-1]
    siblings = [e for e in unknown if e["loc"][:-1] == parent]
    if siblings:
        return _unknown(model, siblings)
    return Refused(_says(model, first["loc"]) or _fallback(first))


def _field_errors(errors: Iterable[ErrorDetails]) -> bool:
    return any(e["type"] != "extra_forbidden" for e in errors)


def _unknown(model: type[Body], unknown: Sequence[ErrorDetails]) -> Refused:
    parent = unknown[0]["loc"][:-1]
    owner = _model_at(model, parent) or model
    names = ", ".join(sorted(str(e["loc"][-1]) for e in unknown))
    return Refused(owner.unknown_fields.replace("{names}", names))


def _says(model: type[Body], loc: Loc) -> str | None:
    """The `Says` sentence of the field at `loc` (list indexes skipped), or the model's own."""
    if not loc:
        return model.not_an_object
    names = [part for part in loc if isinstance(part, str)]
    current: type[BaseModel] | None = model
    message = None
    for name in names:
        if current is None or name not in current.model_fields:
            break
        field = current.model_fields[name]
        message = next((m.message for m in field.metadata if isinstance(m, Says)), None)
        current = _nested_model(field.annotation)
    return message


def _model_at(model: type[Body], loc: Loc) -> type[Body] | None:
    current: type[BaseModel] | None = model
    for name in (part for part in loc if isinstance(part, str)):
        if current is None or name not in current.model_fields:
            return None
        current = _nested_model(current.model_fields[name].annotation)
    return current if current is not None and issubclass(current, Body) else None


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        return next((m for m in map(_nested_model, get_args(annotation)) if m), None)
    return None


def _fallback(error: ErrorDetails) -> str:
    """A field without a `Says`: its dotted name and pydantic's short reason."""
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg'].lower()}" if where else error["msg"]
