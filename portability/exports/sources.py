"""Where each section of the personal-data document comes from.

A provider keeps usage and billing (and sometimes profiles and audit trails) in its own
systems, so each section (profile, api_keys, usage, billing, audit_logs) reads from a
`SectionSource`: one small interface, `rows(section, subject)`, an async iterator of rows
keyed by the schema's field names, in the order the document lists them. Three kinds:

- `ferry`: Ferry's own tables (ferry_source.py), the embedded default;
- `sql`: one read-only query in the provider's own database (sql_source.py);
- any other name: a factory in the `ferry.personal_data` entry-point group, called with the
  section's `SourceSpec`, for whatever else a provider has (an HTTP service, a data lake).

A source that fails raises `SourceFailed` naming its section; the export then fails as a
whole (its upload aborted), never delivering a partial document.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portability.exports.exceptions import ExportFailed

SECTIONS = ("profile", "api_keys", "usage", "billing", "audit_logs")
ENTRY_POINT_GROUP = "ferry.personal_data"
BUILT_IN = ("ferry", "sql")


class SourceFailed(ExportFailed):
    """A section's source could not be read; the message names the section."""

    def __init__(self, section: str, reason: str) -> None:
        super().__init__(f"personal data: the {section} section could not be read ({reason})")
        self.section = section


@dataclass(frozen=True)
class Subject:
    """Whose data: Ferry's id and the email the provider's records know them by."""

    id: uuid.UUID
    email: str


class SectionSource(Protocol):
    def rows(self, section: str, subject: Subject) -> AsyncIterator[Mapping[str, Any]]:
        """The section's rows for `subject`, keyed by the schema's field names; for
        `profile`, at most one row, whose fields replace Ferry's (the id stays Ferry's)."""
        ...


@dataclass(frozen=True)
class SourceSpec:
    """One section's configuration ([personal_data.<section>]), handed to a factory."""

    section: str
    kind: str = "ferry"
    url: str = ""
    query: str = ""
    columns: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # the URL may carry a password
        return f"SourceSpec(section={self.section!r}, kind={self.kind!r})"


SourceFactory = Callable[[SourceSpec], SectionSource]


@dataclass(frozen=True)
class PersonalDataSources:
    """The source of every section; sections not named read Ferry's tables."""

    ferry: SectionSource
    by_section: Mapping[str, SectionSource] = field(default_factory=dict)

    def __getitem__(self, section: str) -> SectionSource:
        return self.by_section.get(section, self.ferry)

    def external(self) -> frozenset[str]:
        """Sections read from elsewhere than Ferry's tables."""
        return frozenset(s for s, source in self.by_section.items() if source is not self.ferry)


def build_sources(
    ferry_sessions: async_sessionmaker[AsyncSession], specs: list[SourceSpec]
) -> PersonalDataSources:
    """Sources for `specs`; raises ValueError (with the section named) for a bad one."""
    from portability.exports.ferry_source import FerryTables
    from portability.exports.sql_source import SqlSource

    ferry = FerryTables(ferry_sessions)
    by_section: dict[str, SectionSource] = {}
    for spec in specs:
        if spec.section not in SECTIONS:
            raise ValueError(f"personal_data: unknown section {spec.section!r}")
        if spec.kind == "ferry":
            by_section[spec.section] = ferry
        elif spec.kind == "sql":
            by_section[spec.section] = SqlSource(spec)
        else:
            factory = _entry_point(spec.kind)
            try:
                by_section[spec.section] = factory(spec)
            except Exception as exc:
                raise ValueError(
                    f"personal_data.{spec.section}: the {spec.kind!r} source could not be "
                    f"made ({type(exc).__name__}: {exc})"
                ) from None
    return PersonalDataSources(ferry, by_section)


def _entry_point(name: str) -> SourceFactory:
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        raise ValueError(
            f"personal_data: no source {name!r}: neither built in ({', '.join(BUILT_IN)}) "
            f"nor an entry point in the {ENTRY_POINT_GROUP!r} group"
        )
    factory: SourceFactory = next(iter(found)).load()
    return factory
