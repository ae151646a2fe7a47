"""The gateway serves HTTPS directly when a certificate is configured."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig

from tests.support.ferry import Ferry
from tests.support.tls import self_signed


def test_https_gateway(database_url: str, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    ferry = Ferry.create(
        tmp_path / "ferry",
        database_url,
        gateway_tls_cert_file=str(cert),
        gateway_tls_key_file=str(key),
    )
    gateway = ferry.gateway_url.replace("http://", "https://")
    ferry.env["FERRY_GATEWAY_PUBLIC_URL"] = gateway
    ferry.create_user("tls@example.com")
    ferry.run("buckets", "create", "tls-data", "--owner", "tls@example.com")
    ferry.serve()
    try:
        cred = json.loads(
            ferry.run(
                "creds", "issue", "--user", "tls@example.com", "--bucket", "tls-data", "--json"
            ).stdout
        )
        assert cred["endpoint_url"].startswith("https://")
        s3 = boto3.session.Session().client(
            "s3",
            endpoint_url=gateway,
            region_name="us-east-1",
            verify=str(cert),
            aws_access_key_id=cred["access_key_id"],
            aws_secret_access_key=cred["secret_access_key"],
            aws_session_token=cred["session_token"],
            config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        assert s3.list_objects_v2(Bucket="tls-data")["KeyCount"] == 0
        # Plain HTTP to the TLS port is not served.
        plain = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", ferry.gateway_url + "/"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert plain.stdout != "200"
    finally:
        ferry.stop()


@pytest.mark.parametrize("only", ["cert", "key"])
def test_half_a_tls_config_is_refused(database_url: str, tmp_path: Path, only: str) -> None:
    ferry = Ferry.create(
        tmp_path / "ferry", database_url, **{f"gateway_tls_{only}_file": str(tmp_path / "x.pem")}
    )
    result = ferry.run("serve", check=False)
    assert result.returncode == 1
    assert "set both tls_cert_file and tls_key_file" in result.stderr
