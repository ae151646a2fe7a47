"""Exports: what POST /api/portability/export takes (request_type "export")."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import ConfigDict, Field, model_validator

from portability.contract.base import Body, Says, refuse

Format = Literal["json", "archive", "s3"]
ArchiveFormat = Literal["tar.gz", "zip"]
Part = Literal["personal", "files"]
FORMATS: tuple[str, ...] = get_args(Format)
ARCHIVE_FORMATS: tuple[str, ...] = get_args(ArchiveFormat)
INCLUDE: tuple[str, ...] = get_args(Part)


class ExportRequest(Body):
    """Personal data as JSON, an archive of everything, or S3 credentials."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"request_type": "export", "format": "archive", "archive_format": "tar.gz"},
                {"format": "s3", "session_token": False},
            ]
        }
    )

    request_type: Annotated[
        Literal["export"], Says("request_type must be 'export' or 'transfer'")
    ] = "export"
    format: Annotated[Format, Says(f"format must be one of {', '.join(FORMATS)}")]
    archive_format: Annotated[
        ArchiveFormat | None,
        Says(f"archive_format must be one of {', '.join(ARCHIVE_FORMATS)}"),
        Field(description="format `archive` only (default zip)."),
    ] = None
    include: Annotated[
        list[Part] | None,
        Says("include must be a non-empty list of 'personal' and 'files'"),
        Field(min_length=1, description="format `archive` only (default both)."),
    ] = None
    session_token: Annotated[
        bool,
        Says("session_token (true or false) applies to format 's3' only"),
        Field(description="format `s3` only: `false` for credentials without a token."),
    ] = True

    @model_validator(mode="after")
    def _options_fit_the_format(self) -> ExportRequest:
        if self.format != "archive" and (
            self.archive_format is not None or self.include is not None
        ):
            raise refuse("archive_format and include apply to format 'archive' only")
        if self.format != "s3" and "session_token" in self.model_fields_set:
            raise refuse("session_token (true or false) applies to format 's3' only")
        return self

    def parts(self) -> tuple[str, ...]:
        """What an archive holds, in the canonical order."""
        chosen = self.include or INCLUDE
        return tuple(part for part in INCLUDE if part in chosen)
