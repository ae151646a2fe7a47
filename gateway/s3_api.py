"""The S3 operations: authenticate, authorise, then one handler per operation.

Authorisation is the same for every operation and comes first: writes and sub-resources we
do not serve are refused, the bucket must be the credential's, and a key must lie within its
prefixes. The handlers (buckets.py, reads.py) are left with what their operation does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.auth import Authenticator
from gateway.buckets import BucketReads
from gateway.errors import S3Error
from gateway.reads import ObjectReads
from gateway.request import GatewayRequest, Reply
from gateway.routing import BAD_LIST_TYPE, KNOWN_METHODS, NOT_ALLOWED, Target, classify
from storage.base import Storage
from sts.store import LiveCredential

Handler = Callable[[GatewayRequest, Target, LiveCredential], Awaitable[Reply]]


class S3Service:
    def __init__(self, storage: Storage, auth: Authenticator, *, domain: str, region: str) -> None:
        """`domain`: virtual-host style requests name their bucket as `<bucket>.<domain>`;
        `region`: what HeadBucket and GetBucketLocation answer."""
        self.auth = auth
        self.domain = domain
        buckets = BucketReads(storage, region=region)
        objects = ObjectReads(storage)
        # Bound once here, not per request.
        self.handlers: dict[str, Handler] = {
            "ListBuckets": buckets.list_buckets,
            "HeadBucket": buckets.head_bucket,
            "GetBucketLocation": buckets.get_bucket_location,
            "ListObjects": buckets.list_objects,
            "ListObjectsV2": buckets.list_objects_v2,
            "GetObject": objects.get_object,
            "HeadObject": objects.head_object,
            "GetObjectTagging": objects.get_object_tagging,
            "GetObjectAttributes": objects.get_object_attributes,
        }

    async def serve(self, request: GatewayRequest) -> Reply:
        if sum(1 for name, _ in request.header_list if name.lower() == b"host") > 1:
            # RFC 9112 3.2: a request with more than one Host is answered 400. Which bucket
            # (virtual-host style) and which signed host would it mean?
            raise S3Error("InvalidRequest", "A request must carry exactly one Host header.")
        target = classify(
            request.method, request.raw_path, request.params, request.headers, self.domain
        )
        event = request.event
        event.action, event.bucket, event.key = target.operation, target.bucket, target.key
        event.range = request.headers.get("range")
        if request.method not in KNOWN_METHODS or target.operation == NOT_ALLOWED:
            # Before authentication, as S3 answers: the method rules out every resource.
            raise S3Error(
                "MethodNotAllowed", "The specified method is not allowed against this resource."
            )
        bucket_prefix = f"/{target.bucket}" if target.virtual_host else ""
        credential = await self.auth.authenticate(request, bucket_prefix=bucket_prefix)
        handler = self._authorise(target, credential)
        return await handler(request, target, credential)

    def _authorise(self, target: Target, credential: LiveCredential) -> Handler:
        """The handler for `target`, once `credential` may ask for it."""
        operation = target.operation
        if target.write or operation.startswith(("Bucket:", "Object:")):
            raise S3Error("AccessDenied", "Access Denied")
        if operation == BAD_LIST_TYPE:
            raise S3Error("InvalidArgument", "Invalid List Type specified in Request")
        if operation != "ListBuckets" and target.bucket != credential.scope.bucket:
            raise S3Error("AccessDenied", "Access Denied")
        key = target.key
        if key is not None and not credential.scope.allows_key(key):
            if credential.scope.is_ancestor(key):
                # rclone HEADs a folder's name before listing it: "not a file" is the answer.
                raise S3Error("NoSuchKey", "The specified key does not exist.")
            raise S3Error("AccessDenied", "Access Denied")
        handler = self.handlers.get(operation)
        if handler is None:  # an operation classify() names but no handler serves
            raise S3Error(
                "NotImplemented",
                "A header you provided implies functionality that is not implemented",
            )
        return handler
