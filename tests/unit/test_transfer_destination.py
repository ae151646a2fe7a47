from __future__ import annotations

import re
import secrets
import uuid

import pytest

from db.models import PortabilityRequest
from portability.contract.base import parse
from portability.contract.transfers import Destination
from portability.transfers import (
    open_destination,
    parse_destination,
    public_destination,
    seal_destination,
)
from sts.exceptions import InvalidRequest, Unsealable

GOOD = {
    "endpoint_url": "https://s3.example.test:9000/",
    "bucket": "new-home",
    "prefix": "from-ferry/",
    "access_key_id": "AKIDEXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "session_token": "tok",
}


def test_sealed_destination_round_trip_and_public_view() -> None:
    key = secrets.token_bytes(32)
    request = PortabilityRequest(
        id=uuid.uuid4(), user_id=uuid.uuid4(), request_type="transfer", status="pending"
    )
    request.transfer_destination = seal_destination(key, request.id, parse(Destination, GOOD))
    assert GOOD["secret_access_key"] not in request.transfer_destination
    assert "tok" not in request.transfer_destination.replace("token", "")
    opened = open_destination(key, request)
    assert opened.in_clear()["secret_access_key"] == GOOD["secret_access_key"]
    assert opened.in_clear()["session_token"] == "tok"
    assert opened.endpoint_url == "https://s3.example.test:9000"
    assert "wJalr" not in repr(opened.for_copy())  # the copy engine's target hides it too
    public = public_destination(request)
    assert (
        public is not None and "secret_access_key" not in public and "session_token" not in public
    )
    with pytest.raises(Unsealable):
        open_destination(secrets.token_bytes(32), request)
    other = PortabilityRequest(id=uuid.uuid4(), transfer_destination=request.transfer_destination)
    with pytest.raises(Unsealable):  # bound to the request it was sealed for
        open_destination(key, other)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"endpoint_url": "ftp://x"}, "http(s)://"),
        ({"endpoint_url": "http://h:99999"}, "malformed"),
        ({"bucket": "Bad_Bucket"}, "destination.bucket"),
        ({"checksum": "crc64"}, "checksum"),
        ({"access_key_id": ""}, "access_key_id"),
        ({"surprise": 1}, "unknown destination field"),
    ],
)
def test_bad_destinations(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        parse_destination({**GOOD, **change})
