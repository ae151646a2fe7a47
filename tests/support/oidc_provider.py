"""A real OpenID Connect provider for the tests: oidc-provider-mock in a process of its own.

`python -m tests.support.oidc_provider --port N --user '{"sub": ..., "email": ...}' ...` runs
the package's provider (discovery, JWKS, authorization form, token endpoint, end-session) on
127.0.0.1:N. One setting is ours: its access tokens are JWTs (RFC 9068 `at+jwt`) signed with
the provider's own key, as a provider's tokens for an API are, where the package hands out
opaque ones. Their `aud` is `--api-audience`, or the `resource` (RFC 8707) the client asked
for, so a test can ask for a token meant for another API.

`OidcProvider` starts it from a test and waits until its discovery document answers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.ferry import free_port


@dataclass
class OidcProvider:
    """A running provider process: its issuer URL, and how to stop it."""

    issuer: str
    process: subprocess.Popen[bytes]
    log_path: Path
    users: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        workdir: Path,
        users: Sequence[dict[str, Any]],
        *,
        api_audience: str = "ferry-api",
        token_max_age: int = 3600,
    ) -> OidcProvider:
        if importlib.util.find_spec("oidc_provider_mock") is None:
            reason = "oidc-provider-mock is not installed (pip install -e '.[test]')"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"{reason} (required under CI=true)", pytrace=False)
            pytest.skip(reason)
        port = free_port()
        args = [sys.executable, "-m", "tests.support.oidc_provider", "--port", str(port)]
        args += ["--api-audience", api_audience, "--token-max-age", str(token_max_age)]
        for user in users:
            args += ["--user", json.dumps(user)]
        log_path = workdir / f"oidc-{port}.log"
        root = Path(__file__).resolve().parents[2]
        with log_path.open("wb") as log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root)
        provider = cls(f"http://127.0.0.1:{port}", process, log_path, list(users))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"the OIDC provider exited: {log_path.read_text()}")
            try:
                provider.discovery()
                return provider
            except OSError:
                time.sleep(0.1)
        provider.stop()
        raise AssertionError("the OIDC provider did not answer within 30 s")

    def discovery(self) -> dict[str, Any]:
        url = self.issuer + "/.well-known/openid-configuration"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            document: dict[str, Any] = json.loads(response.read())
        return document

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _serve(port: int, users: list[dict[str, Any]], api_audience: str, max_age: int) -> None:
    from datetime import timedelta

    import flask
    import oidc_provider_mock
    import werkzeug.serving
    from joserfc import jwk, jwt

    key_of: dict[str, jwk.RSAKey] = {}

    def access_token(client: Any, grant_type: str, user: Any, scope: str) -> str:
        if "key" not in key_of:
            # The provider's own signing key, so its JWKS verifies these tokens too.
            key_of["key"] = jwk.RSAKey.import_key(
                flask.g.oidc_provider_mock_storage.jwk.as_dict(is_private=True)
            )
        now = int(time.time())
        claims = {
            "iss": flask.request.host_url.rstrip("/"),
            "sub": user.sub,
            "aud": flask.request.form.get("resource") or api_audience,
            "client_id": client.get_client_id(),
            "scope": scope or "",
            "iat": now,
            "exp": now + max_age,
            "jti": uuid.uuid4().hex,
            **{k: v for k, v in user.claims.items() if k not in ("sub", "iss", "aud")},
        }
        header = {"alg": "RS256", "typ": "at+jwt", "kid": key_of["key"].kid}
        return jwt.encode(header, claims, key_of["key"])

    app = flask.Flask("oidc_provider_mock._app")
    app.config["OAUTH2_ACCESS_TOKEN_GENERATOR"] = access_token
    oidc_provider_mock.init_app(
        app,
        access_token_max_age=timedelta(seconds=max_age),
        user_claims=[
            oidc_provider_mock.User(sub=u["sub"], claims={k: v for k, v in u.items() if k != "sub"})
            for u in users
        ],
    )
    app.secret_key = uuid.uuid4().bytes
    server = werkzeug.serving.make_server("127.0.0.1", port, app, threaded=True)
    server.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", action="append", default=[], help="claims as JSON, with sub")
    parser.add_argument("--api-audience", default="ferry-api")
    parser.add_argument("--token-max-age", type=int, default=3600)
    args = parser.parse_args(argv)
    users = [json.loads(u) for u in args.user]
    _serve(args.port, users, args.api_audience, args.token_max_age)


if __name__ == "__main__":
    main()
