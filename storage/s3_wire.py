"""How an S3 request is addressed and signed: endpoint parsing, URLs, SigV4 via botocore.

The URL built here is sent byte for byte (aiohttp is handed an already-encoded URL), and the
same string is what botocore signs, so a key like `a//b`, `/abs` or `../x` reaches the server
exactly as stored and the signature covers exactly what was sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from storage.exceptions import ConfigError

ADDRESSING_STYLES = ("path", "virtual")

# Streamed bodies are sent as UNSIGNED-PAYLOAD (hashing them first would mean reading them
# twice); small in-memory bodies (XML) are hashed and signed.
_UNSIGNED = Config(s3={"payload_signing_enabled": False})
_SIGNED = Config(s3={"payload_signing_enabled": True})


@dataclass(frozen=True)
class Endpoint:
    """An S3 endpoint URL, split: `http://127.0.0.1:8333` or `https://s3.example.com/prefix`."""

    scheme: str
    hostname: str  # lower-case; IPv6 without brackets
    port: int | None
    base_path: str  # "" or a path prefix without a trailing slash

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        def bad(why: str) -> ConfigError:
            return ConfigError(
                f"storage endpoint_url {url!r} is not usable: {why} "
                "(expected e.g. http://127.0.0.1:8333 or https://s3.example.com)"
            )

        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise bad(str(exc)) from None
        if parts.scheme not in ("http", "https"):
            raise bad("the scheme must be http or https")
        if not parts.hostname:
            raise bad("it names no host")
        if parts.username or parts.password:
            raise bad("credentials belong in access_key_id/secret_access_key, not the URL")
        if parts.query or parts.fragment:
            raise bad("it must not have a query or fragment")
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    def netloc(self, bucket: str | None = None) -> str:
        """host[:port] as it goes in the Host header; with a bucket, virtual-host style."""
        host = self.hostname
        if _is_ipv6(host):
            host = f"[{host}]"
        if bucket is not None:
            host = f"{bucket}.{host}"
        default_port = 443 if self.scheme == "https" else 80
        if self.port is not None and self.port != default_port:
            host = f"{host}:{self.port}"
        return host


def quote_key(key: str) -> str:
    """Percent-encode a key for the path: everything but RFC 3986 unreserved and `/`."""
    return quote(key, safe="/")


def encode_query(params: Iterable[tuple[str, str | None]]) -> str:
    """A query string in SigV4's encoding; a None value gives a bare name (`?uploads`)."""
    items = []
    for name, value in params:
        encoded = quote(name, safe="-_.~")
        items.append(encoded if value is None else f"{encoded}={quote(value, safe='-_.~')}")
    return "&".join(items)


def build_url(
    endpoint: Endpoint,
    addressing_style: str,
    bucket: str | None,
    key: str = "",
    query: str = "",
) -> tuple[str, str]:
    """(URL, Host header) for a request on a bucket or key, or on the service (bucket None)."""
    if bucket is None:
        netloc, path = endpoint.netloc(), f"{endpoint.base_path}/"
    elif addressing_style == "virtual":
        netloc, path = endpoint.netloc(bucket), f"{endpoint.base_path}/{quote_key(key)}"
    else:
        netloc = endpoint.netloc()
        path = f"{endpoint.base_path}/{bucket}"
        if key:
            path += f"/{quote_key(key)}"
    url = f"{endpoint.scheme}://{netloc}{path}"
    if query:
        url += f"?{query}"
    return url, netloc


class Signer:
    """SigV4 header signing for one set of credentials and one region, done by botocore."""

    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str,
        session_token: str | None,
        region: str,
    ) -> None:
        credentials = Credentials(access_key_id, secret_access_key, session_token)
        self._auth = S3SigV4Auth(credentials, "s3", region)

    def sign(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> dict[str, str]:
        """The headers to send: `headers` plus the date, payload hash, token and signature.

        `body=None` means a streamed body, signed as UNSIGNED-PAYLOAD.
        """
        request = AWSRequest(method=method, url=url, headers=dict(headers), data=body or b"")
        request.context["client_config"] = _UNSIGNED if body is None else _SIGNED
        self._auth.add_auth(request)
        return {name: str(value) for name, value in request.headers.items()}


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False
