"""BagIt (RFC 8493) tag files, so a recipient can check an archive with any BagIt tool.

Each archive part is one bag: `bagit.txt`, `bag-info.txt`, `manifest-sha256.txt` (every
payload file under `data/` with its sha256, computed while it was archived) and
`tagmanifest-sha256.txt` (the tag files' own checksums).
"""

from __future__ import annotations

from datetime import datetime

BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"


def _encode_path(path: str) -> str:
    # RFC 8493 2.1.3: percent, CR and LF (and only those) are percent-encoded in manifests.
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def manifest_line(sha256: str, path: str) -> bytes:
    """One line of manifest-sha256.txt; `path` is relative to the bag (`data/…`)."""
    return f"{sha256}  {_encode_path(path)}\n".encode()


def bag_info(
    *,
    request_id: str,
    part: int,
    payload_bytes: int,
    payload_files: int,
    when: datetime,
) -> bytes:
    lines = [
        "Source-Organization: Ferry",
        f"Bagging-Date: {when:%Y-%m-%d}",
        f"External-Identifier: {request_id}",
        f"Bag-Group-Identifier: {request_id}",
        f"Bag-Count: {part} of ?",  # RFC 8493 allows "?" while the total is unknown
        f"Payload-Oxum: {payload_bytes}.{payload_files}",
        "External-Description: Personal data and files exported under GDPR Article 20."
        " Verify with any BagIt validator (e.g. `bagit.py --validate`).",
    ]
    return ("\n".join(lines) + "\n").encode()


def tag_manifest(entries: list[tuple[str, str]]) -> bytes:
    """tagmanifest-sha256.txt from (name, sha256) of the tag files."""
    return b"".join(manifest_line(sha, name) for name, sha in entries)
