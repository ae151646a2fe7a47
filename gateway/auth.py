"""Who signed a request: SigV4 or SigV2, header or presigned, and whether that key may act now.

Order of checks, as S3 does them: a signature is verified before anything about the
credential's state is revealed (revoked, expired, token), so a key id alone tells a prober
nothing. Both signature versions end in the same checks of the credential, and the audit row
records which version was used.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime

from gateway import sigv2, sigv4
from gateway.errors import S3Error
from gateway.request import GatewayRequest
from sts.keys import hash_token, looks_like_access_key_id
from sts.store import CredentialStore, LiveCredential

_EXPIRED = "The provided token has expired."
_V2_OFF = "Signature Version 2 is turned off on this gateway; use AWS4-HMAC-SHA256"


def signature_version(request: GatewayRequest) -> int | None:
    """4 or 2 by what the request carries; None for an anonymous request."""
    params = request.params
    if "X-Amz-Algorithm" in params or "X-Amz-Signature" in params or "X-Amz-Credential" in params:
        return 4
    if sigv2.is_presigned(params):
        return 2
    auth = request.headers.get("authorization")
    if auth is None:
        return None
    return 2 if auth.strip().partition(" ")[0] == "AWS" else 4


class Authenticator:
    def __init__(
        self,
        credentials: CredentialStore,
        *,
        clock: Callable[[], datetime],
        regions: tuple[str, ...] = (),
        sigv2_enabled: bool = True,
    ) -> None:
        self.credentials = credentials
        self.clock = clock
        self.regions = regions
        self.sigv2_enabled = sigv2_enabled

    async def authenticate(
        self, request: GatewayRequest, *, bucket_prefix: str, service: str = "s3"
    ) -> LiveCredential:
        """The credential that signed `request`, verified and in force, or an S3Error.

        `bucket_prefix` is `/bucket` for a virtual-host style request (SigV2 signs it);
        `service` is what the SigV4 scope must name (`sts` for the STS actions, which take
        no SigV2).
        """
        version = signature_version(request)
        if version is None:
            raise S3Error("AccessDenied", "Anonymous access is not allowed.")
        request.event.details["signature_version"] = version
        now = self.clock()
        if version == 2 and service != "s3":
            raise S3Error("InvalidRequest", "STS takes Signature Version 4 only")
        if version == 2:
            if not self.sigv2_enabled:
                raise S3Error("InvalidRequest", _V2_OFF)
            v2 = sigv2.parse(request.params, request.header_list)
            credential = await self._credential(request, v2.access_key_id)
            sigv2.check_time(v2, now)
            credential = await self._signed_by(
                credential,
                lambda secret: sigv2.verify(
                    v2,
                    secret,
                    method=request.method,
                    raw_path=request.raw_path,
                    query_string=request.query_string,
                    headers=request.header_list,
                    bucket_prefix=bucket_prefix,
                ),
            )
            token = v2.security_token
        else:
            v4 = sigv4.parse(request.method, request.query, request.header_list)
            assert v4 is not None
            credential = await self._credential(request, v4.access_key_id)
            sigv4.check_time(v4, now, regions=self.regions, service=service)
            credential = await self._signed_by(
                credential,
                lambda secret: sigv4.verify(
                    v4,
                    secret,
                    method=request.method,
                    raw_path=request.raw_path,
                    query=request.query,
                    headers=request.header_list,
                ),
            )
            token = v4.security_token
        self._check_token(credential, token)
        if credential.revoked_at is not None:
            raise S3Error(
                "InvalidAccessKeyId", "The AWS Access Key Id you provided has been revoked."
            )
        if now >= credential.expires_at:
            raise S3Error("ExpiredToken", _EXPIRED)
        if version == 2:
            sigv2.expires_within(v2, credential.expires_at)
        if now < credential.not_before:
            raise S3Error("AccessDenied", "The credential is not valid yet.")
        if not credential.scope.allows_address(request.client):
            raise S3Error("AccessDenied", "Requests from this address are not allowed.")
        request.credential = credential
        return credential

    async def _signed_by(
        self, credential: LiveCredential, verify: Callable[[str], None]
    ) -> LiveCredential:
        """The credential, once `verify` accepts one of its secrets: the current one or, in
        a rotation's grace period, the previous one. A signature none of the cached secrets
        makes has the key read again (at most every 50 ms): it may be a secret rotated in
        since, which must work at once."""
        now = self.clock()
        try:
            _verify_any(credential.secrets(now), verify)
            return credential
        except sigv4.SigV4Error as exc:
            if exc.code != "SignatureDoesNotMatch":
                raise
            fresh = await self.credentials.reread(credential.access_key_id)
            if fresh is None or fresh == credential:
                raise
            _verify_any(fresh.secrets(now), verify)
            return fresh

    async def _credential(self, request: GatewayRequest, access_key_id: str) -> LiveCredential:
        credential = None
        if looks_like_access_key_id(access_key_id):
            request.access_key_id = access_key_id
            credential = await self.credentials.get(access_key_id)
        if credential is None:
            raise S3Error(
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        event = request.event
        event.credential_id, event.user_id = credential.id, credential.user_id
        return credential

    @staticmethod
    def _check_token(credential: LiveCredential, token: str | None) -> None:
        """A session token is required exactly when the credential has one."""
        expected = credential.session_token_hash
        if expected is not None:
            try:
                given = hash_token(token) if token else ""
            except UnicodeEncodeError:  # undecodable bytes in the query: no token of ours
                given = ""
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise S3Error(
                    "InvalidToken", "The provided token is malformed or otherwise invalid."
                )
        elif token is not None:
            raise S3Error("InvalidToken", "This credential takes no session token.")


def _verify_any(secrets: tuple[str, ...], verify: Callable[[str], None]) -> None:
    """Pass if `verify` accepts any of `secrets`; else raise what the last one raised."""
    for tried, secret in enumerate(secrets, 1):
        try:
            verify(secret)
            return
        except sigv4.SigV4Error as exc:
            if exc.code != "SignatureDoesNotMatch" or tried == len(secrets):
                raise
