"""Ready-to-paste snippets for a freshly issued credential (the secret is in them: shown once)."""

from __future__ import annotations

from shlex import quote


def _target(bucket: str, prefixes: tuple[str, ...]) -> str:
    # One prefix: point straight at it; several: the bucket (listing is filtered to the scope).
    return f"{bucket}/{prefixes[0]}" if len(prefixes) == 1 else bucket


def build_snippets(
    *,
    endpoint_url: str,
    region: str,
    bucket: str,
    prefixes: tuple[str, ...],
    access_key_id: str,
    secret: str,
    session_token: str | None,
) -> dict[str, str]:
    target = _target(bucket, prefixes)
    local = quote("./" + target.rstrip("/"))
    profile = f"ferry-{access_key_id[-6:].lower()}"

    aws = [
        f"aws configure set aws_access_key_id {access_key_id} --profile {profile}",
        f"aws configure set aws_secret_access_key {quote(secret)} --profile {profile}",
    ]
    if session_token:
        aws.append(f"aws configure set aws_session_token {session_token} --profile {profile}")
    aws += [
        f"aws configure set region {region} --profile {profile}",
        f"aws --profile {profile} --endpoint-url {endpoint_url} s3 sync "
        f"{quote('s3://' + target)} {local}",
    ]

    remote = "FERRY"
    rclone = [
        f"export RCLONE_CONFIG_{remote}_TYPE=s3",
        f"export RCLONE_CONFIG_{remote}_PROVIDER=Other",
        f"export RCLONE_CONFIG_{remote}_ENDPOINT={endpoint_url}",
        f"export RCLONE_CONFIG_{remote}_REGION={region}",
        f"export RCLONE_CONFIG_{remote}_ACCESS_KEY_ID={access_key_id}",
        f"export RCLONE_CONFIG_{remote}_SECRET_ACCESS_KEY={quote(secret)}",
    ]
    if session_token:
        rclone.append(f"export RCLONE_CONFIG_{remote}_SESSION_TOKEN={session_token}")
    rclone += [
        # A read-only key cannot create buckets: don't let rclone try.
        f"export RCLONE_CONFIG_{remote}_NO_CHECK_BUCKET=true",
        f"rclone copy --progress {quote(remote.lower() + ':' + target)} {local}",
    ]

    env = [
        f"export AWS_ACCESS_KEY_ID={access_key_id}",
        f"export AWS_SECRET_ACCESS_KEY={quote(secret)}",
    ]
    if session_token:
        env.append(f"export AWS_SESSION_TOKEN={session_token}")
    env += [f"export AWS_REGION={region}", f"export AWS_ENDPOINT_URL={endpoint_url}"]

    s5cmd = [
        *env[:-1],
        f"s5cmd --endpoint-url {endpoint_url} cp {quote('s3://' + target.rstrip('/') + '/*')} "
        f"{local}/",
    ]
    return {
        "aws_cli": "\n".join(aws),
        "rclone": "\n".join(rclone),
        "s5cmd": "\n".join(s5cmd),
        "env": "\n".join(env),
    }
