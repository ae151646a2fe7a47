"""The webhook routes' part of the OpenAPI document (merged by portability/openapi.py)."""

from __future__ import annotations

from typing import Any

from db.outbox import EVENTS

Json = dict[str, Any]

_TIME = {"type": "string", "format": "date-time"}
_NULL_TIME = {"anyOf": [_TIME, {"type": "null"}]}


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*names: str) -> Json:
    status = {
        "BadJson": "400",
        "Unauthorized": "401",
        "Forbidden": "403",
        "NotFound": "404",
        "Conflict": "409",
        "TooLarge": "413",
        "Invalid": "422",
        "TooMany": "429",
    }
    return {status[n]: {"$ref": f"#/components/responses/{n}"} for n in names}


_ID = {
    "name": "webhook_id",
    "in": "path",
    "required": True,
    "description": "The webhook's id (a UUID).",
    "schema": {"type": "string", "minLength": 1},
}
_DELIVERY = {
    "name": "delivery_id",
    "in": "path",
    "required": True,
    "description": "The delivery's number, from the delivery log.",
    "schema": {"type": "string", "minLength": 1},
}

SCHEMAS: Json = {
    "NewWebhook": {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "maxLength": 2048, "description": "http(s) endpoint"},
            "events": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string", "enum": list(EVENTS)},
                "description": "Default: all of them.",
            },
            "all_users": {
                "type": "boolean",
                "description": "Admins only: hear about every user's requests and credentials.",
            },
        },
    },
    "Webhook": {
        "type": "object",
        "required": ["id", "url", "events", "all_users", "created_at"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "url": {"type": "string"},
            "events": {"type": "array", "items": {"type": "string", "enum": list(EVENTS)}},
            "all_users": {"type": "boolean"},
            "created_at": _TIME,
        },
    },
    "CreatedWebhook": {
        "allOf": [
            _ref("Webhook"),
            {
                "type": "object",
                "required": ["secret"],
                "properties": {
                    "secret": {
                        "type": "string",
                        "description": "`whsec_…`: verifies `webhook-signature` (Standard "
                        "Webhooks). Shown in this answer only.",
                    }
                },
            },
        ]
    },
    "WebhookList": {
        "type": "object",
        "required": ["webhooks"],
        "properties": {"webhooks": {"type": "array", "items": _ref("Webhook")}},
    },
    "Delivery": {
        "type": "object",
        "required": ["id", "event_id", "event", "attempts", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "event_id": {"type": "string", "format": "uuid", "description": "`webhook-id`"},
            "event": {"type": "string", "enum": list(EVENTS)},
            "attempts": {"type": "integer", "minimum": 0},
            "last_status": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "last_error": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "last_attempt_at": _NULL_TIME,
            "next_attempt_at": _NULL_TIME,
            "delivered_at": _NULL_TIME,
            "gave_up_at": _NULL_TIME,
            "created_at": _TIME,
        },
    },
    "DeliveryList": {
        "type": "object",
        "required": ["deliveries"],
        "properties": {"deliveries": {"type": "array", "items": _ref("Delivery")}},
    },
}

_USER = ("Unauthorized", "TooMany")

PATHS: Json = {
    "/api/webhooks": {
        "post": {
            "operationId": "createWebhook",
            "tags": ["webhooks"],
            "summary": "Register an endpoint for signed events (the secret is shown once)",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("NewWebhook")}},
            },
            "responses": {
                "201": _json(_ref("CreatedWebhook"), "Registered."),
                **_errors("BadJson", "TooLarge", "Invalid", *_USER),
            },
        },
        "get": {
            "operationId": "listWebhooks",
            "tags": ["webhooks"],
            "summary": "The caller's endpoints",
            "responses": {"200": _json(_ref("WebhookList"), "The endpoints."), **_errors(*_USER)},
        },
    },
    "/api/webhooks/{webhook_id}": {
        "delete": {
            "operationId": "deleteWebhook",
            "tags": ["webhooks"],
            "summary": "Remove an endpoint and its delivery log",
            "parameters": [_ID],
            "responses": {"204": {"description": "Removed."}, **_errors("NotFound", *_USER)},
        }
    },
    "/api/webhooks/{webhook_id}/deliveries": {
        "get": {
            "operationId": "listWebhookDeliveries",
            "tags": ["webhooks"],
            "summary": "The delivery log: attempts, last status, next try (newest first)",
            "parameters": [_ID],
            "responses": {
                "200": _json(_ref("DeliveryList"), "The last 100 deliveries."),
                **_errors("NotFound", *_USER),
            },
        }
    },
    "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/resend": {
        "post": {
            "operationId": "resendWebhookDelivery",
            "tags": ["webhooks"],
            "summary": "Send a delivery again at once (the same `webhook-id`)",
            "parameters": [_ID, _DELIVERY],
            "responses": {
                "202": _json(_ref("Delivery"), "Queued."),
                **_errors("NotFound", *_USER),
            },
        }
    },
}
