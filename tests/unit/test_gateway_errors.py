"""Every S3 error code the gateway can raise has AWS's status and renders as S3 XML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gateway import errors
from gateway.errors import (
    INTERNAL_ERROR,
    STATUS,
    STORAGE_ERRORS,
    S3Error,
    as_s3_error,
)
from gateway.sigv4 import SigV4Error
from storage import exceptions as storage_errors

GATEWAY = Path(errors.__file__).parent
# A code is the first argument of S3Error/SigV4Error, or one a foreign error is translated to
# (errors.STORAGE_ERRORS, errors.INTERNAL_ERROR); some are chosen by an expression (`"A" if
# presigned else "B"`), so every quoted CamelCase word directly after one of those is collected.
_RAISED = re.compile(r'(?:S3Error|SigV4Error)\(\s*(?:"(\w+)"|(\w+))')
_CHOSEN = re.compile(r'(?:(?<!\.)error = |else |^\s*)"([A-Z]\w+)"(?=,?$|\s+if )', re.M)


def raised_codes() -> set[str]:
    codes = {code for _, code, _ in STORAGE_ERRORS} | {INTERNAL_ERROR[0]}
    for path in GATEWAY.glob("*.py"):
        if path.name == "sts_api.py":
            continue  # STS answers in its own XML (ErrorResponse), 400 or 403 for every code
        text = path.read_text()
        for match in _RAISED.finditer(text):
            if match.group(1):
                codes.add(match.group(1))
        codes.update(_CHOSEN.findall(text))
    return codes


def test_the_scan_finds_the_codes() -> None:
    found = raised_codes()
    for code in [
        "InvalidPartNumber",
        "MethodNotAllowed",
        "SignatureDoesNotMatch",
        "AuthorizationQueryParametersError",
        "InternalError",
        "SlowDown",
    ]:
        assert code in found


@pytest.mark.parametrize("code", sorted(raised_codes()))
def test_every_raised_code_has_a_status_and_renders(code: str) -> None:
    assert code in STATUS, f"{code} is raised but has no status in gateway.errors.STATUS"
    error = S3Error(code, 'a message with <xml> & quotes"')
    assert error.status == STATUS[code]
    response = error.response(request_id="R1", resource="/b/k<&>")
    assert response.status_code == STATUS[code]
    root = ET.fromstring(bytes(response.body))
    assert (root.findtext("Code"), root.findtext("Message")) == (code, error.message)
    head = error.response(request_id="R1", head=True)
    assert (head.status_code, bytes(head.body)) == (STATUS[code], b"")


def test_an_unknown_code_is_still_an_answer() -> None:
    error = S3Error("NoSuchThingAtAll", "oops")
    assert error.status == 500
    response = error.response(request_id="R1")
    assert response.status_code == 500
    assert ET.fromstring(bytes(response.body)).findtext("Code") == "NoSuchThingAtAll"


def test_signature_errors_are_s3_errors() -> None:
    error = SigV4Error("SignatureDoesNotMatch", "no")
    assert isinstance(error, S3Error) and error.status == 403


def test_every_storage_error_is_translated() -> None:
    for name in dir(storage_errors):
        cls = getattr(storage_errors, name)
        if isinstance(cls, type) and issubclass(cls, storage_errors.StorageError):
            error = as_s3_error(cls("x"))
            assert error.code in STATUS and error.status == STATUS[error.code], name


def test_anything_else_is_an_internal_error_that_says_nothing() -> None:
    error = as_s3_error(RuntimeError("connection to 10.0.0.5 refused"))
    assert (error.code, error.status) == ("InternalError", 500)
    assert "10.0.0.5" not in error.message


def test_an_s3_error_renders_itself_with_its_headers() -> None:
    error = S3Error("InvalidRange", "no", headers={"content-range": "bytes */10"})
    assert as_s3_error(error) is error
    response = error.response(request_id="R1", resource="/b/k", head=False)
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */10"
    assert response.headers["x-amz-request-id"] == "R1"
