"""The OpenAPI 3.1 document, generated from the operations and their models."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema

from portability.contract.operations import ERROR_STATUS, Json, Operation, Param, Reply
from portability.contract.service import Error

REF = "#/components/schemas/{model}"


class _Schemas(GenerateJsonSchema):
    # Property titles repeat the property's name; the document is easier to read without.
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def build_document(
    operations: Sequence[Operation],
    *,
    info: Json,
    tags: list[Json],
    security_schemes: Json,
    error_descriptions: dict[str, str],
) -> Json:
    """The document: every operation, every model it names, every error answer."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Error, "serialization")]
    for operation in operations:
        wanted += [(model, "validation") for model in operation.body]
        wanted += [(r.model, "serialization") for r in operation.replies.values() if r.model]
    refs, defs = models_json_schema(
        list(dict.fromkeys(wanted)), ref_template=REF, schema_generator=_Schemas
    )
    paths: Json = {}
    for operation in operations:
        item = paths.setdefault(operation.path, {})
        item[operation.method] = _operation(operation, lambda m, mode: refs[(m, mode)])
    return {
        "openapi": "3.1.0",
        "info": info,
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}],
        "tags": tags,
        "paths": paths,
        "components": {
            "securitySchemes": security_schemes,
            "schemas": defs.get("$defs", {}),
            "responses": {
                name: _content(refs[(Error, "serialization")], description)
                for name, description in error_descriptions.items()
            },
        },
    }


def _operation(operation: Operation, ref: Any) -> Json:
    responses: Json = {
        str(status): _reply(reply, ref) for status, reply in operation.replies.items()
    }
    for name in operation.error_names():
        responses[str(ERROR_STATUS[name])] = {"$ref": f"#/components/responses/{name}"}
    answer: Json = {
        "operationId": operation.operation_id,
        "tags": [operation.tag],
        "summary": operation.summary,
        "responses": dict(sorted(responses.items())),
    }
    if operation.description:
        answer["description"] = operation.description
    if operation.parameters:
        answer["parameters"] = [_parameter(p) for p in operation.parameters]
    if operation.body:
        schemas = [ref(model, "validation") for model in operation.body]
        schema = schemas[0] if len(schemas) == 1 else {"oneOf": schemas}
        answer["requestBody"] = {
            "required": operation.body_required,
            "content": {"application/json": {"schema": schema}},
        }
    if operation.access == "public":
        answer["security"] = []
    return answer


def _reply(reply: Reply, ref: Any) -> Json:
    if reply.model is None:
        answer: Json = {"description": reply.description}
        if reply.media_type != "application/json":
            answer["content"] = {reply.media_type: {"schema": {}}}
    else:
        answer = _content(ref(reply.model, "serialization"), reply.description)
    if reply.links:
        answer["links"] = {
            name: {"operationId": target, "parameters": {param: f"$response.body#{pointer}"}}
            for name, (target, param, pointer) in reply.links.items()
        }
    return answer


def _content(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _parameter(param: Param) -> Json:
    return {
        "name": param.name,
        "in": param.where,
        "required": param.where == "path",
        "description": param.description,
        "schema": param.schema,
    }


def models_of(operations: Iterable[Operation]) -> set[type[BaseModel]]:
    """Every model the operations name (for tests that walk them)."""
    found: set[type[BaseModel]] = set()
    for operation in operations:
        found.update(operation.body)
        found.update(r.model for r in operation.replies.values() if r.model)
    return found
