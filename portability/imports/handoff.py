"""The hand-off document: everything another provider needs to pull one bucket from Ferry.

Issuing pull credentials (or an `s3` export) answers with it once, beside the secret; the
user downloads it as a file and gives it to the provider they move to, whose import accepts
it in place of the separate source fields:

    {"format": "ferry-handoff", "version": 1,
     "endpoint_url": "https://s3.old.example", "region": "us-east-1",
     "addressing_style": "path", "bucket": "photos", "prefixes": [""],
     "access_key_id": "FKIA…", "secret_access_key": "…", "session_token": null,
     "expires_at": "2026-12-05T10:00:00Z", "manifest_url": null}

`manifest_url`, when present, is a presigned link to a `ferry-manifest` (key, size, sha256
of every object) against which the importer verifies every byte it reads.
"""

from __future__ import annotations

from typing import Any

from portability.contract.base import Refused, parse
from portability.contract.imports import HandoffDocument
from sts.exceptions import InvalidRequest

FORMAT = "ferry-handoff"
VERSION = 1


def build_handoff(answer: dict[str, Any], *, manifest_url: str | None = None) -> dict[str, Any]:
    """The hand-off document of a credential just issued (`answer` carries its secret)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "endpoint_url": answer["endpoint_url"],
        "region": answer["region"],
        "addressing_style": "path",
        "bucket": answer["bucket"],
        "prefixes": list(answer["prefixes"]),
        "access_key_id": answer["access_key_id"],
        "secret_access_key": answer["secret_access_key"],
        "session_token": answer.get("session_token"),
        "expires_at": answer["expires_at"],
        "manifest_url": manifest_url,
    }


def source_from_handoff(document: Any, *, prefix: str | None = None) -> dict[str, Any]:
    """The import source fields a hand-off document stands for (`document`: the model, or
    decoded JSON, parsed here).

    A credential scoped to several prefixes cannot be listed as one: `prefix` (the import's
    `source_prefix`) then names the one to import.
    """
    if not isinstance(document, HandoffDocument):
        try:
            document = parse(HandoffDocument, document)
        except Refused as exc:
            raise InvalidRequest(str(exc)) from None
    prefixes = document.prefixes
    if prefix is None:
        if len(prefixes) > 1:
            raise InvalidRequest(
                "the hand-off covers several prefixes; name one with source_prefix"
            )
        prefix = prefixes[0]
    elif not any(prefix.startswith(p) for p in prefixes):
        raise InvalidRequest(f"source_prefix {prefix!r} is outside the hand-off's prefixes")
    source = document.model_dump(
        include={
            "endpoint_url",
            "region",
            "addressing_style",
            "bucket",
            "access_key_id",
            "secret_access_key",
            "session_token",
        }
    )
    source["prefix"] = prefix
    return {"source": source, "manifest_url": document.manifest_url}
