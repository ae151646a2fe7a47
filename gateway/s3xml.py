"""S3's XML answers for the read-only bucket operations."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from urllib.parse import quote_plus
from xml.sax.saxutils import escape

from storage.base import ObjectInfo

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


def iso(when: datetime) -> str:
    """`2026-12-04T18:01:02.345Z` for a UTC time: once per object listed, where strftime
    cost twice what isoformat does."""
    return when.isoformat(timespec="milliseconds")[:23] + "Z"


def _text(value: str, url: bool) -> str:
    # encoding-type=url is form encoding, as S3 sends it: a space is '+' and '+' is %2B
    # (botocore and the other SDKs decode with unquote_plus).
    if url:
        return quote_plus(value, safe="/", errors="surrogateescape")
    return escape(value)


def _el(name: str, value: str | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{value}</{name}>"


def list_buckets(bucket: str, created: datetime, owner_id: str) -> str:
    return (
        f'{HEAD}<ListAllMyBucketsResult xmlns="{NS}"><Owner><ID>{owner_id}</ID>'
        f"<DisplayName>{owner_id}</DisplayName></Owner><Buckets><Bucket><Name>{bucket}</Name>"
        f"<CreationDate>{iso(created)}</CreationDate></Bucket></Buckets></ListAllMyBucketsResult>"
    )


def location(region: str) -> str:
    # us-east-1 is the empty constraint, as S3 answers it.
    value = "" if region == "us-east-1" else escape(region)
    return f'{HEAD}<LocationConstraint xmlns="{NS}">{value}</LocationConstraint>'


def _contents(objects: Iterable[ObjectInfo], url: bool, owner: str | None) -> str:
    parts = []
    for o in objects:
        owner_xml = (
            f"<Owner><ID>{owner}</ID><DisplayName>{owner}</DisplayName></Owner>" if owner else ""
        )
        parts.append(
            f"<Contents><Key>{_text(o.key, url)}</Key>"
            f"<LastModified>{iso(o.last_modified)}</LastModified>"
            f"<ETag>&quot;{escape(o.etag)}&quot;</ETag><Size>{o.size}</Size>{owner_xml}"
            "<StorageClass>STANDARD</StorageClass></Contents>"
        )
    return "".join(parts)


def _prefixes(prefixes: Iterable[str], url: bool) -> str:
    return "".join(
        f"<CommonPrefixes><Prefix>{_text(p, url)}</Prefix></CommonPrefixes>" for p in prefixes
    )


def list_objects(
    *,
    v2: bool,
    bucket: str,
    prefix: str,
    delimiter: str,
    max_keys: int,
    url: bool,
    objects: list[ObjectInfo],
    prefixes: list[str],
    truncated: bool,
    marker: str = "",
    next_marker: str | None = None,
    start_after: str = "",
    continuation_token: str | None = None,
    next_token: str | None = None,
    owner: str | None = None,
) -> str:
    head = [_el("Name", escape(bucket)), _el("Prefix", _text(prefix, url))]
    if v2:
        head += [
            _el("KeyCount", len(objects) + len(prefixes)),
            _el("MaxKeys", max_keys),
        ]
        if delimiter:
            head.append(_el("Delimiter", _text(delimiter, url)))
        head += [
            _el("IsTruncated", "true" if truncated else "false"),
            _el("ContinuationToken", continuation_token),
            _el("NextContinuationToken", next_token if truncated else None),
            _el("StartAfter", _text(start_after, url) if start_after else None),
        ]
    else:
        head += [_el("Marker", _text(marker, url)), _el("MaxKeys", max_keys)]
        if delimiter:
            head.append(_el("Delimiter", _text(delimiter, url)))
        head.append(_el("IsTruncated", "true" if truncated else "false"))
        if truncated and delimiter and next_marker is not None:
            head.append(_el("NextMarker", _text(next_marker, url)))
    if url:
        head.append(_el("EncodingType", "url"))
    return (
        f'{HEAD}<ListBucketResult xmlns="{NS}">{"".join(head)}'
        f"{_contents(objects, url, owner)}{_prefixes(prefixes, url)}</ListBucketResult>"
    )


def tagging() -> str:
    return f'{HEAD}<Tagging xmlns="{NS}"><TagSet></TagSet></Tagging>'


def object_attributes(info: ObjectInfo, wanted: set[str]) -> str:
    parts = []
    if "etag" in wanted:
        parts.append(_el("ETag", escape(info.etag)))
    if "objectsize" in wanted:
        parts.append(_el("ObjectSize", info.size))
    if "storageclass" in wanted:
        parts.append(_el("StorageClass", "STANDARD"))
    name = "GetObjectAttributesResponse"
    return f'{HEAD}<{name} xmlns="{NS}">{"".join(parts)}</{name}>'
