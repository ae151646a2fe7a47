"""The seam through which a caller sees each object's bytes as the engine reads them.

An import computes each object's SHA-256 while it is copied and compares it with the
manifest it was given; a mismatch must keep the object from becoming visible on the target.

    class Sha256Check:
        def read(self, key, offset, data): ...        # feed the key's running hash
        async def finished(self, key, size): ...      # raise VerificationFailed on mismatch

Contract, per object (per item attempt):

- `read(key, offset, data)` is called once for each span read in full from the source,
  before it is sent. A single-PUT object is one span at offset 0. A multipart object's spans
  arrive in part order only when TransferConfig has part_concurrency=1 and
  read_ahead_parts=0; otherwise in any order. A read that failed and was retried is seen once,
  when it succeeds. `data` is valid only during the call (its buffer is reused): copy or hash.
- `finished(key, size)` is called when every span of this attempt was read and sent, just
  before the write that makes the object visible (the PUT, or CompleteMultipartUpload).
  Raising VerificationFailed there aborts the upload and copies the object again from
  its first byte (up to item_attempts times); ItemFailed fails the item at once.
- A resumed multipart upload sends only the parts the target lacks, so `read` sees only
  those spans. An observer that needs every byte raises ReadBack from `finished`: the engine
  completes the upload, then reads the object back from the target (not from the source
  again) through `read` and calls `finished` once more; if that raises, the object is
  deleted from the target before the error goes on. Only a resumed object is briefly
  visible before it is checked.
- An observer may also have `async report(session, request_id) -> (sections, error)`: the
  engine calls it in the transaction that finishes the job and adds `sections` to the
  report; `error`, when the job failed, is the request's error.
- Objects found on the target already (skipped) are not read; with an observer the engine
  never copies server-side, so every copied byte passes through `read`.
"""

from __future__ import annotations

from typing import Protocol


class SourceObserver(Protocol):
    def read(self, key: str, offset: int, data: memoryview) -> None: ...

    async def finished(self, key: str, size: int) -> None: ...
