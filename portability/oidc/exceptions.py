"""What can go wrong talking to an OpenID Connect provider, or with what it hands us.

    OidcError
    ├── ProviderUnavailable   discovery, JWKS or token endpoint unreachable, or its answer
    │                         is not what OpenID Connect says it must be
    ├── SignInRefused         the provider turned the sign-in down (a used or unknown code,
    │                         the user cancelled, a flow that expired or was tampered with)
    ├── TokenInvalid          an ID or access token fails a check: signature, issuer,
    │                         audience, expiry, nonce
    └── AccountRefused        a valid identity Ferry will not let in: no email, an email
                              not verified, no such user while auto_create_users is off

The dashboard turns each into a page and the API into a JSON error; none is a 5xx trace.
"""

from __future__ import annotations


class OidcError(Exception):
    """Base of the tree; the message is fit for the person signing in."""


class ProviderUnavailable(OidcError):
    pass


class SignInRefused(OidcError):
    pass


class TokenInvalid(OidcError):
    pass


class AccountRefused(OidcError):
    pass
