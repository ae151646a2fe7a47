"""Errors raised by storage backends.

    StorageError
    ├── InvalidKey           a key that cannot be stored (empty, too long, not UTF-8, or refused
    │                        by the backend's own naming rules)
    ├── InvalidBucketName    a bucket name outside S3's naming rules
    ├── NoSuchBucket
    ├── NoSuchKey
    ├── NoSuchUpload
    ├── InvalidRange         a range that does not overlap the object
    ├── InvalidPartNumber    a read of part N of an object with fewer parts
    ├── PartsUnknown         an object whose part layout was never recorded (local objects
    │                        completed before the index kept part sizes)
    ├── InvalidPart          a part missing, out of order, too small or with the wrong ETag at
    │                        completion
    ├── IncompleteBody       a body that ended before, or ran past, the size it was announced with
    ├── BadDigest            a body that does not match the Content-MD5 or checksum sent with it
    ├── ChecksumUnsupported  the backend refuses x-amz-checksum-* headers (B2, R2, older Ceph)
    ├── PreconditionFailed   a copy's source no longer matches x-amz-copy-source-if-match
    ├── ConfigError          an unknown backend or a malformed setting
    ├── BackendUnavailable   the backend could not be reached or answered 5xx after retries
    └── BackendError         the backend refused the request for another reason (AccessDenied,
                             InvalidRequest, …); carries the backend's status and error code

Backends translate their own failures (OSError, HTTP status, S3 error codes) into these at
their boundary; callers never see aiohttp or botocore exceptions.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every storage error."""


class InvalidKey(StorageError):
    pass


class InvalidBucketName(StorageError):
    pass


class NoSuchBucket(StorageError):
    pass


class NoSuchKey(StorageError):
    pass


class NoSuchUpload(StorageError):
    pass


class InvalidRange(StorageError):
    pass


class InvalidPart(StorageError):
    pass


class InvalidPartNumber(StorageError):
    pass


class PartsUnknown(StorageError):
    pass


class IncompleteBody(StorageError):
    pass


class BadDigest(StorageError):
    pass


class ChecksumUnsupported(StorageError):
    pass


class PreconditionFailed(StorageError):
    pass


class ConfigError(StorageError):
    pass


class BackendUnavailable(StorageError):
    pass


class BackendError(StorageError):
    """A refusal with no better home in this tree, as the backend stated it."""

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
