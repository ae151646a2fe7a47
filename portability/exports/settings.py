"""Export settings: one frozen dataclass, validated on construction, built at the edge."""

from __future__ import annotations

from dataclasses import dataclass

from portability.exports.exceptions import InvalidExport

MiB = 1024 * 1024
GiB = 1024 * MiB
WEEK = 7 * 24 * 3600  # SigV4's longest presigned life


@dataclass(frozen=True)
class ExportSettings:
    """How exports are built and delivered.

    `part_size` is the target size of one archive part (each part is a complete archive and a
    bag of its own); an object is never split, so a part holding one big object may be larger.
    `upload_chunk_size` is the multipart upload's part size: it bounds memory, about three
    chunks per running export.
    """

    gateway_url: str = "http://127.0.0.1:9000"
    region: str = "us-east-1"
    exports_bucket: str = "ferry-exports"  # backend bucket that holds every export object
    part_size: int = 2 * GiB
    upload_chunk_size: int = 8 * MiB
    link_ttl_seconds: int = WEEK
    compression_level: int = 1  # ISA-L levels 0..3; 1 matches `gzip -1`'s ratio
    max_active_per_user: int = 1  # 0: no limit
    s3_manifest_sha256: bool = True  # read every object once to put sha256 in a pull manifest
    expiring_notice_seconds: int = 24 * 3600
    poll_interval: float = 2.0
    lease_seconds: int = 60
    receipt_interval: float = 30.0
    read_chunk_size: int = 1 * MiB

    def __post_init__(self) -> None:
        if self.part_size < 5 * MiB:
            raise InvalidExport("exports.part_size must be at least 5 MiB")
        if not 5 * MiB <= self.upload_chunk_size <= 5 * GiB:
            raise InvalidExport("exports.upload_chunk_size must be between 5 MiB and 5 GiB")
        if not 1 <= self.link_ttl_seconds <= WEEK:
            raise InvalidExport(f"exports.link_ttl_seconds must be between 1 and {WEEK}")
        if not 0 <= self.compression_level <= 3:
            raise InvalidExport("exports.compression_level must be 0..3 (ISA-L levels)")
        if self.max_active_per_user < 0:
            raise InvalidExport("exports.max_active_per_user must not be negative")
        if self.lease_seconds < 5:
            raise InvalidExport("exports.lease_seconds must be at least 5")
