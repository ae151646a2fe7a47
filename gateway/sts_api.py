"""STS on the gateway's listener: AssumeRole and GetSessionToken, as AWS STS and MinIO answer.

`POST /` with a form body (`Action=AssumeRole&Version=2011-06-15&…`), signed with SigV4 for
service `sts`, as `aws sts assume-role --endpoint-url http://gateway` and boto3's STS client
send it. The caller is a token-free Ferry credential; the answer is a session credential
(sts/session.py): the caller's scope narrowed by an optional session `Policy`, living
`DurationSeconds` (900 to 43,200; default 3,600) but never past the caller's expiry, and
revoked with the caller. `RoleArn` names nothing in Ferry (a credential has one scope) and is
echoed in the answer's ARN. Errors are STS's own XML (`ErrorResponse`), not S3's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import datetime
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Receive

from db.models import Bucket, Credential
from gateway.auth import Authenticator
from gateway.errors import S3Error
from gateway.request import GatewayRequest, Reply
from storage.validation import parse_decimal
from sts.exceptions import InvalidRequest
from sts.policy import MalformedPolicyDocument
from sts.session import DURATION_DEFAULT, mint_session

VERSION = "2011-06-15"
NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
MAX_BODY = 16 * 1024  # a form with a 2 KiB policy, percent-encoded, and room to spare
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")
_STATUS = {"AccessDenied": 403, "InvalidClientTokenId": 403, "SignatureDoesNotMatch": 403}
# S3 codes the shared authentication raises, as STS names them.
_STS_CODES = {"InvalidAccessKeyId": "InvalidClientTokenId", "InvalidToken": "InvalidClientTokenId"}


class StsApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def is_sts_request(method: str, raw_path: bytes, headers: dict[str, str]) -> bool:
    """A form POST to the service root: what STS clients send (S3 has no such request)."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    return (
        method == "POST"
        and raw_path == b"/"
        and content_type == "application/x-www-form-urlencoded"
    )


def error_reply(code: str, message: str, request_id: str) -> Reply:
    body = (
        f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>Sender</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return Reply(_STATUS.get(code, 400), {"content-type": "text/xml"}, body.encode())


class StsService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        master_key: bytes,
        auth: Authenticator,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.sessions = sessions
        self.master_key = master_key
        self.auth = auth
        self.clock = clock

    async def serve(self, request: GatewayRequest, receive: Receive) -> Reply:
        try:
            return await self._serve(request, await _read_form(receive))
        except StsApiError as exc:
            request.event.error = exc.code
            return error_reply(exc.code, exc.message, request.id)
        except S3Error as exc:  # from the shared authentication
            code = _STS_CODES.get(exc.code, exc.code)
            request.event.error = code
            return error_reply(code, exc.message, request.id)

    async def _serve(self, request: GatewayRequest, body: bytes) -> Reply:
        try:
            form = dict(
                parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            )
        except UnicodeDecodeError:
            raise StsApiError("InvalidParameterValue", "the form is not UTF-8") from None
        action = form.get("Action", "")
        request.event.action = action if action in ("AssumeRole", "GetSessionToken") else "Sts"
        if action not in ("AssumeRole", "GetSessionToken"):
            raise StsApiError("InvalidAction", f"Could not find operation {action[:64]!r}")
        if form.get("Version") != VERSION:
            raise StsApiError("InvalidParameterValue", f"Version must be {VERSION}")
        # The body is signed by its SHA-256, which STS clients put in no header of their own.
        if not any(name.lower() == b"x-amz-content-sha256" for name, _ in request.header_list):
            digest = hashlib.sha256(body).hexdigest().encode()
            request.header_list = [*request.header_list, (b"x-amz-content-sha256", digest)]
        caller = await self.auth.authenticate(request, bucket_prefix="", service="sts")
        duration = self._duration(form.get("DurationSeconds"))
        name = form.get("RoleSessionName")
        if action == "AssumeRole":
            if not form.get("RoleArn"):
                raise StsApiError("MissingParameter", "RoleArn is required")
            if name is None or not _SESSION_NAME.fullmatch(name):
                raise StsApiError(
                    "ValidationError", "RoleSessionName: 2 to 64 of [A-Za-z0-9_+=,.@-]"
                )
        now = self.clock()
        async with self.sessions.begin() as session:
            row = await session.execute(
                select(Credential, Bucket)
                .join(Bucket, Bucket.id == Credential.bucket_id)
                .where(Credential.id == caller.id)
            )
            found = row.first()
            if found is None:
                raise StsApiError("InvalidClientTokenId", "The security token is not valid.")
            parent, bucket = found
            try:
                minted = await mint_session(
                    session,
                    self.master_key,
                    parent,
                    bucket,
                    now=now,
                    duration_seconds=duration,
                    policy=form.get("Policy"),
                    name=name,
                )
            except MalformedPolicyDocument as exc:
                raise StsApiError("MalformedPolicyDocument", str(exc)) from None
            except InvalidRequest as exc:
                code = "AccessDenied" if "token-free" in str(exc) else "ValidationError"
                raise StsApiError(code, str(exc)) from None
        request.event.details["minted"] = minted.credential.access_key_id
        expiration = minted.credential.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        credentials = (
            f"<Credentials><AccessKeyId>{minted.credential.access_key_id}</AccessKeyId>"
            f"<SecretAccessKey>{minted.secret}</SecretAccessKey>"
            f"<SessionToken>{escape(minted.session_token or '')}</SessionToken>"
            f"<Expiration>{expiration}</Expiration></Credentials>"
        )
        if action == "AssumeRole":
            role = escape(form["RoleArn"].rsplit("/", 1)[-1][:64])
            result = (
                f"{credentials}<AssumedRoleUser>"
                f"<AssumedRoleId>{caller.access_key_id}:{escape(name or '')}</AssumedRoleId>"
                f"<Arn>arn:aws:sts::ferry:assumed-role/{role}/{escape(name or '')}</Arn>"
                "</AssumedRoleUser><PackedPolicySize>0</PackedPolicySize>"
            )
        else:
            result = credentials
        body_xml = (
            f'<{action}Response xmlns="{NAMESPACE}"><{action}Result>{result}</{action}Result>'
            f"<ResponseMetadata><RequestId>{request.id}</RequestId></ResponseMetadata>"
            f"</{action}Response>"
        )
        return Reply(
            200, {"content-type": "text/xml", "cache-control": "no-store"}, body_xml.encode()
        )

    @staticmethod
    def _duration(text: str | None) -> int:
        if text is None:
            return DURATION_DEFAULT
        try:
            return parse_decimal(text, maximum=10**9)
        except ValueError:
            raise StsApiError("ValidationError", "DurationSeconds must be a whole number") from None


async def _read_form(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise StsApiError("InvalidParameterValue", "the request body did not arrive")
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            raise StsApiError("ValidationError", f"the form is larger than {MAX_BODY} bytes")
        if not message.get("more_body", False):
            return bytes(body)
