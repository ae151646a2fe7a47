"""Ferry's webhook signatures verify with the Standard Webhooks reference library."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from portability.webhooks import signing


def test_a_signed_delivery_verifies_with_standardwebhooks() -> None:
    secret = signing.new_secret()
    body = json.dumps({"type": "request.ready", "data": {"id": "x"}}).encode()
    headers = signing.headers(secret, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == json.loads(body)


def test_a_changed_body_or_another_secret_does_not_verify() -> None:
    secret = signing.new_secret()
    body = b'{"type":"credential.revoked"}'
    headers = signing.headers(secret, "evt-1", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"revoked", b"expired"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)
