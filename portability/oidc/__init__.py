"""OpenID Connect: dashboard sign-in and API bearer tokens from the provider's own IdP."""
