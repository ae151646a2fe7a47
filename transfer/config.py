"""The copy engine's settings: one frozen dataclass, checked on construction."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
GiB = 1024 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's smallest part (all but the last)
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * 1024 * GiB
VERIFY_MODES = ("etag", "full")


@dataclass(frozen=True)
class TransferConfig:
    """How a worker copies.

    Memory: every part (and every object below the threshold) is held in memory once while
    it is hashed and sent, so it can carry a Content-MD5 and be resent without reading the
    source again. `memory_limit` caps the sum of those buffers per worker; with the defaults
    that is 6 parts of 16 MiB at most: 4 being sent (part_concurrency) and 2 read ahead
    (read_ahead_parts), so an upload that ends is followed at once by the next. It sits
    below what one 100 MiB object's seven parts would take, so peak memory is the same for
    any object of that size or larger (lanes then wait for the budget).

    Four uploads of one object at a time, as rclone's default: more in flight made the
    SeaweedFS target spend more CPU per byte in bench/copy.py (6.9 s against 5.9 s for
    512 MiB) and finish later.

    `min_part_size` below S3's 5 MiB is for tests against servers that accept small parts
    (moto and SeaweedFS do); real targets refuse them.
    """

    multipart_threshold: int = 16 * MiB
    part_size: int = 16 * MiB
    min_part_size: int = MIN_PART_SIZE
    max_parts: int = MAX_PARTS
    object_concurrency: int = 16
    part_concurrency: int = 4
    read_ahead_parts: int = 2
    memory_limit: int = 96 * MiB
    bandwidth_limit: int | None = None  # bytes per second per job and worker; None: no limit
    verify: str = "etag"  # "full": re-read every copied object from the target
    verify_server_copies: bool = True  # re-read server-side copies, against the source MD5
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    progress_seconds: float = 2.0
    poll_seconds: float = 2.0
    list_page_size: int = 1000
    request_attempts: int = 6
    item_attempts: int = 3
    backoff_base: float = 0.2
    backoff_cap: float = 10.0
    report_failures_limit: int = 1000
    report_objects_limit: int = 1000
    read_chunk_size: int = 256 * 1024

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            if getattr(self, name) <= 0:
                raise ValueError(f"TransferConfig.{name} must be positive")

        for name in (
            "multipart_threshold",
            "part_size",
            "min_part_size",
            "max_parts",
            "object_concurrency",
            "part_concurrency",
            "memory_limit",
            "lease_seconds",
            "heartbeat_seconds",
            "progress_seconds",
            "poll_seconds",
            "list_page_size",
            "request_attempts",
            "item_attempts",
            "read_chunk_size",
        ):
            positive(name)
        if self.read_ahead_parts < 0:
            raise ValueError("TransferConfig.read_ahead_parts must not be negative")
        if self.verify not in VERIFY_MODES:
            raise ValueError(f"TransferConfig.verify must be one of {', '.join(VERIFY_MODES)}")
        if self.bandwidth_limit is not None and self.bandwidth_limit <= 0:
            raise ValueError("TransferConfig.bandwidth_limit must be positive or None")
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ValueError("heartbeat_seconds must be at most half of lease_seconds")
        if not self.min_part_size <= self.part_size <= MAX_PART_SIZE:
            raise ValueError("part_size must lie between min_part_size and 5 GiB")
        if self.memory_limit < self.part_size:
            raise ValueError("memory_limit must hold at least one part")
        if self.multipart_threshold > self.memory_limit:
            raise ValueError("multipart_threshold must not exceed memory_limit")

    def choose_part_size(self, size: int) -> int:
        """The configured part size, grown (in MiB steps) until `size` fits in max_parts."""
        part = self.part_size
        if size > part * self.max_parts:
            needed = -(-size // self.max_parts)
            part = -(-needed // MiB) * MiB
        return min(part, MAX_PART_SIZE)

    def multipart(self, size: int) -> bool:
        return size >= self.multipart_threshold
