from __future__ import annotations

import xml.etree.ElementTree as ET

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from starlette.testclient import TestClient

from gateway.app import GatewayApp


def test_anonymous_request_is_access_denied_in_s3_xml() -> None:
    client = TestClient(GatewayApp())
    response = client.get("/alice-data/some/key")
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/xml")
    error = ET.fromstring(response.content)
    assert error.findtext("Code") == "AccessDenied"
    assert error.findtext("RequestId") == response.headers["x-amz-request-id"]
    assert error.findtext("Resource") == "/alice-data/some/key"


def test_head_error_has_no_body() -> None:
    response = TestClient(GatewayApp()).head("/b/k")
    assert response.status_code == 403
    assert response.content == b""


def test_botocore_sees_a_proper_s3_error(unused_tcp_port: int) -> None:
    # botocore must parse the answer as an S3 error, not choke on it.
    import threading

    import uvicorn

    config = uvicorn.Config(GatewayApp(), port=unused_tcp_port, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{unused_tcp_port}",
            aws_access_key_id="FRYAAAAAAAAAAAAAAAAA",
            aws_secret_access_key="x" * 40,
            region_name="us-east-1",
            config=BotoConfig(retries={"max_attempts": 1}),
        )
        with pytest.raises(ClientError) as info:
            s3.list_objects_v2(Bucket="alice-data")
        assert info.value.response["Error"]["Code"] == "NotImplemented"
    finally:
        server.should_exit = True
        thread.join(5)
