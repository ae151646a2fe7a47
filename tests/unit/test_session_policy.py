"""Session policies narrow, never widen; anything Ferry cannot honour exactly is refused."""

from __future__ import annotations

import json

import pytest

from sts.policy import MalformedPolicyDocument, narrow, session_prefixes

BUCKET = "alice-data"


def policy(*statements: dict[str, object]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def get(*resources: str) -> dict[str, object]:
    return {"Effect": "Allow", "Action": "s3:GetObject", "Resource": list(resources)}


def test_a_policy_narrows_share_to_share_2024() -> None:
    doc = policy(
        get(f"arn:aws:s3:::{BUCKET}/share/2024/*"),
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": f"arn:aws:s3:::{BUCKET}",
            "Condition": {"StringLike": {"s3:prefix": ["share/2024/*"]}},
        },
    )
    assert session_prefixes(doc, bucket=BUCKET, parent=["share/"]) == ("share/2024/",)


def test_a_policy_cannot_widen_its_parent() -> None:
    everything = policy(get(f"arn:aws:s3:::{BUCKET}/*"))
    assert session_prefixes(everything, bucket=BUCKET, parent=["share/"]) == ("share/",)
    elsewhere = policy(get(f"arn:aws:s3:::{BUCKET}/private/*"))
    assert session_prefixes(elsewhere, bucket=BUCKET, parent=["share/"]) == ()


def test_narrow_takes_the_inner_prefix_of_each_pair() -> None:
    assert narrow(["a/", "b/"], ["a/x/", "b", "c/"]) == ("a/x/", "b/")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "not JSON"),
        (policy({**get(f"arn:aws:s3:::{BUCKET}/*"), "Effect": "Deny"}), "Effect Allow"),
        (
            policy({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}),
            "read-only",
        ),
        (policy(get("arn:aws:s3:::other-bucket/*")), "not the credential's bucket"),
        (policy(get(f"arn:aws:s3:::{BUCKET}/a*b/*")), "one trailing"),
        (policy(get(f"arn:aws:s3:::{BUCKET}/exact.txt")), "one trailing"),
        (
            policy(
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}"}
            ),
            "must allow s3:GetObject",
        ),
        (
            policy(
                get(f"arn:aws:s3:::{BUCKET}/a/*"),
                {
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": f"arn:aws:s3:::{BUCKET}",
                    "Condition": {"StringLike": {"s3:prefix": "b/*"}},
                },
            ),
            "goes beyond",
        ),
        (
            policy({**get(f"arn:aws:s3:::{BUCKET}/*"), "Condition": {"IpAddress": {}}}),
            "ListBucket only",
        ),
        (policy({**get(f"arn:aws:s3:::{BUCKET}/*"), "NotAction": "s3:*"}), "unsupported"),
        ("x" * 3000, "larger than"),
    ],
)
def test_what_cannot_be_honoured_exactly_is_malformed(document: str, message: str) -> None:
    with pytest.raises(MalformedPolicyDocument, match=message):
        session_prefixes(document, bucket=BUCKET, parent=[""])
