"""Which bucket and key a request names, and which S3 operation it is.

Path style always (`/bucket/key`); virtual-host style (`bucket.<domain>/key`) when a domain is
configured. The key is the percent-decoded raw path, byte for byte: no normalisation of `//`,
`.` or `..`, which are legal parts of S3 keys.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import unquote

# Sub-resources that turn a bucket or object request into another operation. Any we do not
# serve is refused before it reaches storage.
_BUCKET_READS = {"location": "GetBucketLocation", "list-type": "ListObjectsV2"}
_OBJECT_READS = {"tagging": "GetObjectTagging", "attributes": "GetObjectAttributes"}
_WRITE_METHODS = {"PUT", "POST", "DELETE"}
# S3's methods; any other (OPTIONS, TRACE, PATCH, PROPFIND, …) is 405 MethodNotAllowed.
KNOWN_METHODS = frozenset({"GET", "HEAD"} | _WRITE_METHODS)
# Operations that are answered with an error whatever the credential may do.
NOT_ALLOWED = "MethodNotAllowed"
BAD_LIST_TYPE = "InvalidListType"
KNOWN_SUBRESOURCES = {
    "acl",
    "accelerate",
    "analytics",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "lifecycle",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "legal-hold",
    "select",
    "torrent",
    "uploads",
    "uploadId",
    "versioning",
    "versions",
    "website",
    "delete",
    "tagging",
    "attributes",
    "location",
    "list-type",
}


@dataclass(frozen=True)
class Target:
    bucket: str | None
    key: str | None
    operation: str
    write: bool  # a mutating operation: refused for every Ferry credential
    virtual_host: bool = False  # the bucket came from the Host header


def _host(headers: dict[str, str]) -> str:
    host = headers.get("host", "")
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


def is_virtual_host(host: str, domain: str) -> bool:
    return bool(domain) and host.lower().endswith("." + domain.lower())


def split_path(raw_path: bytes, host: str, domain: str) -> tuple[str | None, str | None]:
    """(bucket, key) from the raw path and Host; key None for bucket-level requests."""
    path = unquote(raw_path.decode("utf-8", errors="surrogateescape"), errors="surrogateescape")
    host = host.lower()
    if is_virtual_host(host, domain):
        bucket: str | None = host[: -len(domain) - 1]
        key = path[1:] if path.startswith("/") else path
        return bucket, key or None
    if not path.startswith("/"):
        return None, None
    bucket, sep, key = path[1:].partition("/")
    if not bucket:
        return None, None
    return bucket, (key if sep and key else None)


def classify(
    method: str, raw_path: bytes, query: dict[str, str], headers: dict[str, str], domain: str
) -> Target:
    target = _classify(method, raw_path, query, headers, domain)
    if is_virtual_host(_host(headers), domain):
        return replace(target, virtual_host=True)
    return target


def _classify(
    method: str, raw_path: bytes, query: dict[str, str], headers: dict[str, str], domain: str
) -> Target:
    bucket, key = split_path(raw_path, _host(headers), domain)
    write = method in _WRITE_METHODS
    if bucket is None:
        # The service answers GET only (ListBuckets); writes to it are refused as writes.
        return Target(None, None, "ListBuckets" if method == "GET" else NOT_ALLOWED, write)
    if key is None:
        if write:
            op = "PutBucket" if method == "PUT" else f"{method.title()}Bucket"
            return Target(bucket, None, op, True)
        if method == "HEAD":
            return Target(bucket, None, "HeadBucket", False)
        for name, op in _BUCKET_READS.items():
            if name in query:
                if op == "ListObjectsV2" and query[name] != "2":
                    return Target(bucket, None, BAD_LIST_TYPE, False)
                return Target(bucket, None, op, False)
        other = [q for q in query if q in KNOWN_SUBRESOURCES]
        if other:
            return Target(bucket, None, f"Bucket:{other[0]}", False)
        return Target(bucket, None, "ListObjects", False)
    if write:
        if "x-amz-copy-source" in headers:
            op = "CopyObject"
        elif "uploads" in query or "uploadId" in query:
            op = "MultipartUpload"
        else:
            op = {"PUT": "PutObject", "DELETE": "DeleteObject", "POST": "PostObject"}.get(
                method, method
            )
        return Target(bucket, key, op, True)
    for name, op in _OBJECT_READS.items():
        if name in query:
            return Target(bucket, key, op, False)
    other = [q for q in query if q in KNOWN_SUBRESOURCES]
    if other:
        return Target(bucket, key, f"Object:{other[0]}", False)
    return Target(bucket, key, "HeadObject" if method == "HEAD" else "GetObject", False)
