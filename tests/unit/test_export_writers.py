"""The tar.gz and zip encoders, the gzip member stream and the compression choice."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from portability.exports.compress import GzipStream, stored_blocks, worth_compressing
from portability.exports.tar_writer import TarGzEncoder
from portability.exports.zip_writer import ZipEncoder

WHEN = datetime(2026, 5, 17, 12, 30, 44, tzinfo=UTC)
FILES = {
    "root/a.txt": b"hello " * 5000,
    "root/random.bin": os.urandom(200_000),
    "root/empty": b"",
    "root/日本語/ファイル.txt": "unicode ✓".encode(),
    "root/" + "d" * 150 + "/long-name.txt": b"long",
}


def _zip(force_zip64: bool, files: dict[str, bytes] = FILES) -> bytes:
    encoder = ZipEncoder(1, force_zip64=force_zip64)
    out, central = bytearray(), bytearray()
    for name, data in files.items():
        out += encoder.begin(name, len(data), WHEN, name.endswith(".txt"))
        for start in range(0, len(data), 65536):
            out += encoder.data(data[start : start + 65536])
        tail, record = encoder.end()
        out += tail
        central += record
    start = len(out)
    out += central
    out += encoder.finish(start, len(central))
    return bytes(out)


def _tar(files: dict[str, bytes] = FILES) -> bytes:
    encoder = TarGzEncoder(1)
    out = bytearray()
    for name, data in files.items():
        out += encoder.begin(name, len(data), WHEN, not name.endswith(".bin"))
        out += encoder.data(data)
        out += encoder.end()
    return bytes(out + encoder.finish())


@pytest.mark.parametrize("force_zip64", [False, True])
def test_zip_reads_back_with_zipfile_and_unzip(tmp_path: Path, force_zip64: bool) -> None:
    blob = _zip(force_zip64)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        for name, data in FILES.items():
            assert zf.read(name) == data
            info = zf.getinfo(name)
            assert info.date_time == (2026, 5, 17, 12, 30, 44)
            assert info.compress_type == (8 if name.endswith(".txt") else 0)
    path = tmp_path / "t.zip"
    path.write_bytes(blob)
    result = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zip64_end_records_for_many_entries() -> None:
    files = {f"f{i}": b"" for i in range(70_000)}  # more than a 16-bit count holds
    with zipfile.ZipFile(io.BytesIO(_zip(False, files))) as zf:
        assert len(zf.infolist()) == 70_000


def test_tar_gz_reads_back_with_tarfile_gzip_and_tar(tmp_path: Path) -> None:
    blob = _tar()
    assert len(gzip.decompress(blob)) % 10240 == 0
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        for name, data in FILES.items():
            member = tf.getmember(name)
            assert member.mtime == int(WHEN.timestamp())
            extracted = tf.extractfile(member)
            assert extracted is not None and extracted.read() == data
    path = tmp_path / "t.tar.gz"
    path.write_bytes(blob)
    listed = subprocess.run(["tar", "-tzf", str(path)], capture_output=True, text=True, check=True)
    assert listed.stdout.splitlines() == list(FILES)


def test_gzip_members_mix_deflate_and_stored() -> None:
    stream = GzipStream(1)
    text, noise = b"abc" * 100_000, os.urandom(150_000)
    blob = stream.write(text, True) + stream.write(noise, False) + stream.write(text, True)
    blob += stream.close()
    assert gzip.decompress(blob) == text + noise + text
    assert len(blob) < len(noise) + 2000  # text shrank, noise is stored with tiny overhead
    assert len(stored_blocks(b"x" * 70_000)) == 70_000 + 2 * 5


@pytest.mark.parametrize("starts_deflated", [True, False])
def test_zip_entry_mixes_deflated_and_stored_runs(tmp_path: Path, starts_deflated: bool) -> None:
    """An adaptive entry: text deflated, noise in stored blocks, one deflate stream."""
    text, noise = b"lorem ipsum " * 20_000, os.urandom(300_000)
    runs = [(text, True), (noise, False), (noise, False), (text, True), (noise, False)]
    if not starts_deflated:
        runs = runs[1:]
    data = b"".join(chunk for chunk, _ in runs)
    encoder = ZipEncoder(1)
    out = bytearray(encoder.begin("mixed.bin", len(data), WHEN, runs[0][1], adaptive=True))
    for chunk, deflate in runs:
        out += encoder.data(chunk, deflate)
    tail, record = encoder.end()
    out += tail
    start = len(out)
    out += record + encoder.finish(start, len(record))
    with zipfile.ZipFile(io.BytesIO(bytes(out))) as zf:
        assert zf.getinfo("mixed.bin").compress_type == 8
        assert zf.read("mixed.bin") == data
    noise_bytes = sum(len(chunk) for chunk, deflate in runs if not deflate)
    text_bytes = len(data) - noise_bytes
    # The text shrank to a few percent; the noise costs 5 bytes per 64 KiB stored block.
    assert len(out) < noise_bytes + text_bytes * 0.05 + 1000
    path = tmp_path / "mixed.zip"
    path.write_bytes(bytes(out))
    result = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compression_choice() -> None:
    assert not worth_compressing("a.jpg", "image/jpeg", b"\xff\xd8\xff" + os.urandom(4000))
    assert not worth_compressing("a.bin", None, b"PK\x03\x04" + os.urandom(4000))
    assert not worth_compressing("x", "application/octet-stream", os.urandom(70_000))
    assert not worth_compressing("movie.MP4", None, b"\0" * 4000)
    assert worth_compressing("notes.txt", "text/plain", b"lorem ipsum " * 1000)
    assert worth_compressing("tiny.jpg", "image/jpeg", b"\xff\xd8\xff")  # too small to matter
