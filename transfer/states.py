"""The named states a transfer moves through, as stored in the database.

Request (`portability_requests.status`, owned by portability/requests.py; the strings are
repeated here because `portability` uses `transfer`, not the other way round):

    pending ─► processing ─► completed | failed        set by the worker
        └──────────┴───────► cancelled                 set by the API; workers then stop and
                                                       abort open multipart uploads

Job (`transfer_jobs.state`): one per transfer request.

    planning ─► copying ─► finished
    planning: one worker (holding the job's lease) lists the source page by page into items;
    copying: any number of workers claim items; finished: the report is written (once).

Item (`transfer_items.state`): one per source object.

    pending ─► copying ─► done | skipped | failed
                  └─► pending      a lease that ran out (crashed worker) or a retryable failure

An item in `copying` has a lease (`lease_owner`, `lease_expires_at`) renewed by heartbeats;
when it runs out any worker may take the item over, and resumes its multipart upload from
the parts stored in `transfer_parts`.

How an object was verified (`transfer_items.verified`), as the report counts them:

    etag                 the target's ETag equals the MD5 (single part) or md5(part md5s)-N
                         computed while reading the source
    etag+crc32c          ... and the target's CRC32C (or +sha256) equals ours as well
    checksum-crc32c      the target's CRC32C (or sha256) equals ours, and the ETag was not
                         compared: it is not an MD5 on this target, or the parts were not
                         hashed with MD5 because the target checks each part's checksum
    size                 neither could be compared: only the size was checked
    ...+full             the object was read back from the target and hashed (verify="full")
    server-copy+md5      copied server-side; read back and equal to the source's MD5 ETag
    server-copy+size     copied server-side (pinned to the source ETag); size checked
    skip:etag            skipped: the target held the same size and ETag already
    skip:ledger          skipped: an earlier Ferry transfer wrote it from this source version
                         and the target still has the ETag it answered then
"""

from __future__ import annotations

# Request statuses (portability/requests.py)
PENDING = "pending"
PROCESSING = "processing"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
REQUEST_TYPE = "transfer"
IMPORT_REQUEST_TYPE = "import"  # the same engine, from another provider into Ferry's storage
COPY_REQUEST_TYPES = (REQUEST_TYPE, IMPORT_REQUEST_TYPE)

# Job states
PLANNING = "planning"
COPYING = "copying"
FINISHED = "finished"

# Item states
ITEM_PENDING = "pending"
ITEM_COPYING = "copying"
DONE = "done"
SKIPPED = "skipped"
ITEM_FAILED = "failed"
OPEN_ITEM_STATES = (ITEM_PENDING, ITEM_COPYING)
