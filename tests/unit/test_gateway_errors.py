"""Every S3 error code the gateway can raise has AWS's status and renders as S3 XML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gateway import app as gateway_app
from gateway.errors import STATUS, S3Error, error_response
from gateway.sigv4 import SigV4Error
from storage import exceptions as storage_errors

GATEWAY = Path(gateway_app.__file__).parent
# A code is the first argument of S3Error/SigV4Error, or what _storage_error returns; some
# are chosen by an expression (`"A" if presigned else "B"`), so every quoted CamelCase word
# directly after one of those is collected.
_RAISED = re.compile(r'(?:S3Error|SigV4Error)\(\s*(?:"(\w+)"|(\w+))|return "(\w+)", "')
_CHOSEN = re.compile(r'(?:(?<!\.)error = |else |^\s*)"([A-Z]\w+)"(?=,?$|\s+if )', re.M)


def raised_codes() -> set[str]:
    codes: set[str] = set()
    for path in GATEWAY.glob("*.py"):
        if path.name == "sts_api.py":
            continue  # STS answers in its own XML (ErrorResponse), 400 or 403 for every code
        text = path.read_text()
        for match in _RAISED.finditer(text):
            codes.update(code for code in (match.group(1), match.group(3)) if code)
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
    response = error_response(code, error.message, request_id="R1", resource="/b/k<&>")
    assert response.status_code == STATUS[code]
    root = ET.fromstring(bytes(response.body))
    assert (root.findtext("Code"), root.findtext("Message")) == (code, error.message)
    head = error_response(code, error.message, request_id="R1", head=True)
    assert (head.status_code, bytes(head.body)) == (STATUS[code], b"")


def test_an_unknown_code_is_still_an_answer() -> None:
    error = S3Error("NoSuchThingAtAll", "oops")
    assert error.status == 500
    response = error_response(error.code, error.message, request_id="R1")
    assert response.status_code == 500
    assert ET.fromstring(bytes(response.body)).findtext("Code") == "NoSuchThingAtAll"


def test_signature_errors_are_s3_errors() -> None:
    error = SigV4Error("SignatureDoesNotMatch", "no")
    assert isinstance(error, S3Error) and error.status == 403


def test_every_storage_error_is_translated() -> None:
    for name in dir(storage_errors):
        cls = getattr(storage_errors, name)
        if isinstance(cls, type) and issubclass(cls, storage_errors.StorageError):
            code, _ = gateway_app._storage_error(cls("x"))
            assert code in STATUS, name
