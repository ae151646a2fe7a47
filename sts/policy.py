"""Session policies: the read-only subset of IAM's grammar that maps onto Ferry's scopes.

An `AssumeRole` or `GetSessionToken` caller may pass a session `Policy` that narrows what the
session credential reads. Ferry accepts exactly what it can represent, and refuses anything
else with `MalformedPolicyDocument`, so a policy is never silently widened or half-applied:

    {"Version": "2012-10-17",
     "Statement": [
       {"Effect": "Allow", "Action": ["s3:GetObject"],
        "Resource": ["arn:aws:s3:::alice-data/share/2024/*"]},
       {"Effect": "Allow", "Action": ["s3:ListBucket"],
        "Resource": ["arn:aws:s3:::alice-data"],
        "Condition": {"StringLike": {"s3:prefix": ["share/2024/*"]}}}]}

- `Effect` is `Allow`; actions are `s3:GetObject` (also `s3:GetObjectVersion`,
  `s3:GetObjectTagging`, `s3:GetObjectAttributes`), `s3:ListBucket` and
  `s3:GetBucketLocation`, or `s3:Get*`/`s3:List*`; `Resource` names the credential's bucket,
  objects as `arn:aws:s3:::bucket/prefix*` (a trailing `*` only).
- `s3:ListBucket` may carry `StringLike`/`StringEquals` on `s3:prefix`; its prefixes must lie
  inside the readable ones (Ferry lists and reads by one set of prefixes).
- At least one statement must allow `s3:GetObject`.

The session's prefixes are the policy's object prefixes narrowed by the parent's: a policy
cannot reach outside what its parent reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sts.exceptions import StsError
from sts.scope import normalise_prefixes

MAX_POLICY_BYTES = 2048  # AWS's packed limit for a session policy is about this
READ_OBJECT = {
    "s3:getobject",
    "s3:getobjectversion",
    "s3:getobjecttagging",
    "s3:getobjectattributes",
    "s3:get*",
}
LIST_BUCKET = {"s3:listbucket", "s3:getbucketlocation", "s3:list*", "s3:get*"}


class MalformedPolicyDocument(StsError):
    """A session policy outside the grammar Ferry can honour."""


def _as_list(value: Any, what: str) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise MalformedPolicyDocument(f"{what} must be a string or a non-empty list of strings")


def narrow(parent: Iterable[str], wanted: Iterable[str]) -> tuple[str, ...]:
    """The prefixes both allow: for each pair, the longer one if it lies inside the other."""
    result = []
    for p in parent:
        for w in wanted:
            if w.startswith(p):
                result.append(w)
            elif p.startswith(w):
                result.append(p)
    return normalise_prefixes(result)


def session_prefixes(document: str, *, bucket: str, parent: Iterable[str]) -> tuple[str, ...]:
    """The prefixes a session under `document` may read; MalformedPolicyDocument if the
    policy says anything Ferry cannot honour exactly. An empty result reads nothing."""
    if len(document.encode()) > MAX_POLICY_BYTES:
        raise MalformedPolicyDocument(f"the policy is larger than {MAX_POLICY_BYTES} bytes")
    try:
        policy = json.loads(document)
    except ValueError:
        raise MalformedPolicyDocument("the policy is not JSON") from None
    if not isinstance(policy, dict) or set(policy) - {"Version", "Statement", "Id"}:
        raise MalformedPolicyDocument("a policy has Version and Statement only")
    if policy.get("Version", "2012-10-17") != "2012-10-17":
        raise MalformedPolicyDocument("Version must be 2012-10-17")
    statements = policy.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise MalformedPolicyDocument("Statement must be a statement or a list of them")
    readable: list[str] = []
    listable: list[str] = []
    for statement in statements:
        reads, lists = _statement(statement, bucket)
        readable += reads
        listable += lists
    if not readable:
        raise MalformedPolicyDocument("the policy must allow s3:GetObject on some objects")
    for prefix in listable:
        if not any(prefix.startswith(r) for r in readable):
            raise MalformedPolicyDocument(
                f"s3:ListBucket on prefix {prefix!r} goes beyond the readable objects"
            )
    return narrow(normalise_prefixes(parent), normalise_prefixes(readable))


def _statement(statement: Any, bucket: str) -> tuple[list[str], list[str]]:
    if not isinstance(statement, dict):
        raise MalformedPolicyDocument("each statement must be an object")
    unknown = set(statement) - {"Sid", "Effect", "Action", "Resource", "Condition"}
    if unknown:
        raise MalformedPolicyDocument(f"unsupported statement element(s): {sorted(unknown)}")
    if statement.get("Effect") != "Allow":
        raise MalformedPolicyDocument("only Effect Allow is supported (Deny cannot narrow here)")
    actions = {a.lower() for a in _as_list(statement.get("Action"), "Action")}
    if not actions <= READ_OBJECT | LIST_BUCKET:
        extra = sorted(actions - READ_OBJECT - LIST_BUCKET)
        raise MalformedPolicyDocument(f"a session policy is read-only; refused: {extra}")
    bucket_arn = f"arn:aws:s3:::{bucket}"
    objects: list[str] = []
    bucket_named = False
    for resource in _as_list(statement.get("Resource"), "Resource"):
        if resource == bucket_arn:
            bucket_named = True
        elif resource.startswith(bucket_arn + "/"):
            pattern = resource[len(bucket_arn) + 1 :]
            if not pattern.endswith("*") or "?" in pattern or "*" in pattern[:-1]:
                raise MalformedPolicyDocument(
                    f"name objects by prefix with one trailing *: {resource!r}"
                )
            objects.append(pattern[:-1])
        else:
            raise MalformedPolicyDocument(f"{resource!r} is not the credential's bucket")
    reads = objects if actions & READ_OBJECT else []
    if actions & READ_OBJECT and not objects:
        raise MalformedPolicyDocument("s3:GetObject needs object resources (bucket/prefix*)")
    lists: list[str] = []
    if actions & LIST_BUCKET and bucket_named:
        lists = _list_prefixes(statement.get("Condition"))
    elif statement.get("Condition") is not None:
        raise MalformedPolicyDocument("conditions are supported on s3:ListBucket only")
    return reads, lists


def _list_prefixes(condition: Any) -> list[str]:
    if condition is None:
        return [""]
    if not isinstance(condition, dict) or set(condition) - {"StringLike", "StringEquals"}:
        raise MalformedPolicyDocument("only StringLike and StringEquals on s3:prefix")
    prefixes: list[str] = []
    for operator, clause in condition.items():
        if not isinstance(clause, dict) or set(clause) != {"s3:prefix"}:
            raise MalformedPolicyDocument("conditions may name s3:prefix only")
        for value in _as_list(clause["s3:prefix"], "s3:prefix"):
            if operator == "StringLike":
                if "?" in value or "*" in value[:-1]:
                    raise MalformedPolicyDocument(f"only a trailing * is supported: {value!r}")
                value = value.removesuffix("*")
            prefixes.append(value)
    return prefixes
