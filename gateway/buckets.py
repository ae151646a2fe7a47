"""ListBuckets, HeadBucket, GetBucketLocation, ListObjects and ListObjectsV2.

Each handler is called once the request is authenticated and its bucket is the credential's
(s3_api.py); listings see only what the credential's prefixes allow (listing.py).
"""

from __future__ import annotations

import base64
import binascii

from gateway import s3xml
from gateway.errors import S3Error
from gateway.listing import OutOfScope, ScopedLister
from gateway.request import GatewayRequest, Reply, xml_reply
from gateway.routing import Target
from storage.base import Storage
from storage.validation import parse_decimal
from sts.store import LiveCredential


class BucketReads:
    def __init__(self, storage: Storage, *, region: str) -> None:
        """`region`: what HeadBucket and GetBucketLocation answer."""
        self.storage = storage
        self.region = region

    async def list_buckets(
        self, request: GatewayRequest, target: Target, credential: LiveCredential
    ) -> Reply:
        body = s3xml.list_buckets(
            credential.scope.bucket, credential.not_before, str(credential.user_id)
        )
        return xml_reply(body)

    async def head_bucket(
        self, request: GatewayRequest, target: Target, credential: LiveCredential
    ) -> Reply:
        await self._check_exists(credential)
        return Reply(headers={"x-amz-bucket-region": self.region})

    async def get_bucket_location(
        self, request: GatewayRequest, target: Target, credential: LiveCredential
    ) -> Reply:
        await self._check_exists(credential)
        return xml_reply(s3xml.location(self.region))

    async def list_objects(
        self, request: GatewayRequest, target: Target, credential: LiveCredential
    ) -> Reply:
        return await self._list(request, credential, v2=False)

    async def list_objects_v2(
        self, request: GatewayRequest, target: Target, credential: LiveCredential
    ) -> Reply:
        return await self._list(request, credential, v2=True)

    async def _check_exists(self, credential: LiveCredential) -> None:
        # The bucket is registered, but its backend bucket may be gone: S3's answer for a
        # bucket that does not exist is NoSuchBucket, not a 200.
        if not await self.storage.bucket_exists(credential.backend_bucket):
            raise S3Error("NoSuchBucket", "The specified bucket does not exist")

    async def _list(
        self, request: GatewayRequest, credential: LiveCredential, *, v2: bool
    ) -> Reply:
        p = request.params
        encoding = p.get("encoding-type")
        if encoding is not None and encoding != "url":
            raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request")
        try:
            # S3 reads max-keys as a 32-bit integer and caps what it returns at 1000.
            asked = parse_decimal(p.get("max-keys", "1000"), maximum=2**31 - 1)
        except ValueError:
            raise S3Error(
                "InvalidArgument", "Provided max-keys not an integer or within integer range"
            ) from None
        prefix, delimiter = p.get("prefix", ""), p.get("delimiter", "")
        token = p.get("continuation-token")
        if v2:
            start_after = p.get("start-after", "")
            position = _decode_token(token) if token is not None else start_after
        else:
            position = p.get("marker", "")
        lister = ScopedLister(self.storage, credential.backend_bucket, credential.backend_prefix)
        try:
            page = await lister.page(
                credential.scope.prefixes,
                prefix=prefix,
                delimiter=delimiter,
                start_after=position,
                max_keys=min(asked, 1000),
            )
        except OutOfScope:
            raise S3Error("AccessDenied", "Access Denied") from None
        body = s3xml.list_objects(
            v2=v2,
            bucket=credential.scope.bucket,
            prefix=prefix,
            delimiter=delimiter,
            max_keys=asked,  # echoed as asked, as S3 does; at most 1000 are listed
            url=encoding == "url",
            objects=page.objects,
            prefixes=page.common_prefixes,
            truncated=page.is_truncated,
            marker=p.get("marker", ""),
            next_marker=page.last_name,
            start_after=p.get("start-after", ""),
            continuation_token=token,
            next_token=_encode_token(page.last_name) if page.last_name else None,
            owner=str(credential.user_id) if (not v2 or p.get("fetch-owner") == "true") else None,
        )
        return xml_reply(body)


def _encode_token(name: str) -> str:
    # Unpadded: a token is pasted into URLs, where '=' invites double decoding.
    raw = base64.urlsafe_b64encode(name.encode("utf-8", errors="surrogateescape"))
    return raw.decode().rstrip("=")


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect") from None
