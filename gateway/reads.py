"""GetObject, HeadObject and their sub-resources: ranges, parts, conditionals, overrides."""

from __future__ import annotations

import re

from gateway import s3xml
from gateway.errors import S3Error
from gateway.objects import OVERRIDES, check_conditions, object_headers, parse_range
from gateway.request import GatewayRequest, Reply, xml_reply
from gateway.routing import Target
from storage.base import ObjectInfo, ObjectStream, PartSpan, Storage
from storage.exceptions import InvalidPartNumber, InvalidRange
from storage.validation import parse_decimal, resolve_range
from sts.store import LiveCredential

MAX_PART_NUMBER = 10_000
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


class ObjectReads:
    """The object handlers. Each is called once the request is authenticated and its key is
    within the credential's scope (s3_api.py)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def get_object_tagging(
        self, request: GatewayRequest, target: Target, credential: LiveCredential
    ) -> Reply:
        await self.storage.head(credential.backend_bucket, _backend_key(target, credential))
        return xml_reply(s3xml.tagging())

    async def get_object_attributes(
        self, request: GatewayRequest, target: Target, credential: LiveCredential
    ) -> Reply:
        info = await self.storage.head(credential.backend_bucket, _backend_key(target, credential))
        wanted = {
            a.strip().lower() for a in request.headers.get("x-amz-object-attributes", "").split(",")
        }
        modified = object_headers(info, {}, overrides_allowed=False)["last-modified"]
        return xml_reply(s3xml.object_attributes(info, wanted), {"last-modified": modified})

    async def head_object(
        self, request: GatewayRequest, target: Target, credential: LiveCredential
    ) -> Reply:
        bucket, key = credential.backend_bucket, _backend_key(target, credential)
        check_overrides(request.params)
        part = _part_number(request)
        if part is not None:
            return await self._part(request, bucket, key, part, head=True)
        span = parse_range(request.headers.get("range"))
        info = await self.storage.head(bucket, key)
        return _conditional(request, info) or _object_reply(request, info, span, None)

    async def get_object(
        self, request: GatewayRequest, target: Target, credential: LiveCredential
    ) -> Reply:
        bucket, key = credential.backend_bucket, _backend_key(target, credential)
        check_overrides(request.params)
        part = _part_number(request)
        if part is not None:
            return await self._part(request, bucket, key, part, head=False)
        span = parse_range(request.headers.get("range"))
        try:
            stream = await self.storage.get(
                bucket, key, start=span[0] if span else None, end=span[1] if span else None
            )
        except InvalidRange:
            # Preconditions come before the range (RFC 9110 §13.2.2): 412 or 304 first.
            info = await self.storage.head(bucket, key)
            precondition = _conditional(request, info)
            if precondition is not None:
                return precondition
            raise unsatisfiable(info.size) from None
        return await _streamed(request, stream, span, None)

    async def _part(
        self, request: GatewayRequest, bucket: str, key: str, part: int, *, head: bool
    ) -> Reply:
        """A read of one part: 206 with the part's bytes and the object's part count."""
        if "range" in request.headers:
            raise S3Error(
                "InvalidRequest", "Cannot specify both Range header and partNumber query parameter"
            )
        try:
            info, layout = await self.storage.part_span(bucket, key, part)
        except InvalidPartNumber:
            # As for a range: the preconditions are answered first.
            precondition = _conditional(request, await self.storage.head(bucket, key))
            if precondition is not None:
                return precondition
            raise S3Error(
                "InvalidPartNumber", "The requested partnumber is not satisfiable"
            ) from None
        span = (layout.first, layout.last)
        if head:
            return _conditional(request, info) or _object_reply(request, info, span, layout)
        stream = await self.storage.get(bucket, key, start=layout.first, end=layout.last)
        return await _streamed(request, stream, span, layout)


def _backend_key(target: Target, credential: LiveCredential) -> str:
    assert target.key is not None  # object operations are classified from a key
    return credential.backend_prefix + target.key


def _part_number(request: GatewayRequest) -> int | None:
    text = request.params.get("partNumber")
    if text is None:
        return None
    try:
        return parse_decimal(text, minimum=1, maximum=MAX_PART_NUMBER)
    except ValueError:
        raise S3Error(
            "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive"
        ) from None


async def _streamed(
    request: GatewayRequest,
    stream: ObjectStream,
    span: tuple[int | None, int | None] | None,
    layout: PartSpan | None,
) -> Reply:
    """The answer to an open GET; the backend read is released unless its body goes out."""
    try:
        reply = _conditional(request, stream.info)
        if reply is None:
            return _object_reply(request, stream.info, span, layout, stream=stream)
    except BaseException:
        await stream.aclose()
        raise
    await stream.aclose()
    return reply


def _conditional(request: GatewayRequest, info: ObjectInfo) -> Reply | None:
    """The 304 answer, a PreconditionFailed error, or None to serve the object."""
    condition = check_conditions(request.headers, info)
    if condition == 412:
        raise S3Error(
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
        )
    if condition == 304:
        base = object_headers(info, {}, overrides_allowed=False)
        return Reply(304, {k: base[k] for k in ("etag", "last-modified")})
    return None


def check_overrides(params: dict[str, str]) -> None:
    """response-* values go out as header values: printable ASCII only, as stored headers are."""
    for name in OVERRIDES:
        value = params.get(name)
        if value is not None and not _HEADER_VALUE.fullmatch(value):
            raise S3Error("InvalidArgument", f"{name} must be printable ASCII")


def _object_reply(
    request: GatewayRequest,
    info: ObjectInfo,
    span: tuple[int | None, int | None] | None,
    layout: PartSpan | None,
    *,
    stream: ObjectStream | None = None,
) -> Reply:
    headers = object_headers(info, request.params, overrides_allowed=True)
    if layout is not None and "-" in info.etag:
        # Only for an object uploaded in parts: S3 sends no count for one put whole.
        headers["x-amz-mp-parts-count"] = str(layout.count)
    if stream is not None:
        first, last = stream.start, stream.end
        if span is not None and last < first:
            # An empty object has no byte to satisfy a range with; a backend that served
            # it whole anyway does not make the answer a 206 of nothing.
            raise unsatisfiable(info.size)
    elif span is None:
        first, last = 0, info.size - 1
    else:
        try:
            first, last = resolve_range(info.size, span[0], span[1])
        except InvalidRange:
            raise unsatisfiable(info.size) from None
    headers["content-length"] = str(max(0, last - first + 1))
    status = 200
    if span is not None:
        status = 206
        headers["content-range"] = f"bytes {first}-{last}/{info.size}"
    return Reply(status, headers, stream=stream)


def unsatisfiable(size: int) -> S3Error:
    return S3Error(
        "InvalidRange",
        "The requested range is not satisfiable",
        headers={"content-range": f"bytes */{size}"},
    )
