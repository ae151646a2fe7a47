"""Errors of the export side.

    ExportError
    ├── InvalidExport       a request the API refuses (unknown format, bad option): 422
    ├── ExportConflict      another export of the user is still running: 409
    ├── ExportCancelled     the request was cancelled (or taken over) while it was being built
    └── ExportFailed        building the export failed; the message is the user-facing reason

Storage, database and mail failures are translated into these at the worker's boundary;
what reaches `metadata.error` is one line, never a trace.
"""

from __future__ import annotations


class ExportError(Exception):
    """Base of every export error."""


class InvalidExport(ExportError):
    pass


class ExportConflict(ExportError):
    pass


class ExportCancelled(ExportError):
    pass


class ExportFailed(ExportError):
    pass
