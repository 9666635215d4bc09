"""Who may ingest: API keys (Bearer) and HMAC-SHA256 signed webhooks. No framework imports."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from cloud.api.header_ints import unsigned
from giftwheel.clock import Clock

SIGNATURE_HEADER = "x-giftwheel-signature"
TIMESTAMP_HEADER = "x-giftwheel-timestamp"
SIGNATURE_SCHEME = "sha256="
# Unix seconds have 10 digits until the year 2286; 12 leave room and refuse the absurd.
_MAX_TIMESTAMP_DIGITS = 12
# Distinct accepted Authorization values remembered (spellings of the configured keys).
_MAX_REMEMBERED = 64


class AuthError(Exception):
    """The request is not authenticated; the message says why (safe to show the sender)."""


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "api-key", "signature" or "open" (development mode without keys)


def secret_matches(presented: str, configured: SecretStr) -> bool:
    """Compared as SHA-256 digests, so neither the secret's length nor its content leaks through timing."""
    expected = hashlib.sha256(configured.get_secret_value().encode()).digest()
    return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), expected)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature a webhook sender puts in X-Giftwheel-Signature: HMAC over "<timestamp>.<body>"."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_SCHEME + mac.hexdigest()


class Authenticator:
    def __init__(
        self,
        api_keys: list[SecretStr],
        webhook_secrets: list[SecretStr],
        *,
        signature_window_s: int,
        clock: Clock,
    ) -> None:
        # Keys are compared as SHA-256 digests, each with compare_digest, so neither the length
        # nor the content of a configured key leaks through timing.
        self._key_digests = [hashlib.sha256(k.get_secret_value().encode()).digest() for k in api_keys]
        self._secrets = [s.get_secret_value() for s in webhook_secrets]
        self._window_s = signature_window_s
        self._clock = clock
        self.open = not (self._key_digests or self._secrets)
        # Authorization values already verified. A source sends the same header on every request,
        # so the hashing and comparing is done once per distinct value; only accepted values are
        # kept, so a flood of wrong keys cannot grow it, and it is bounded for the rest.
        self._accepted: dict[str, Principal] = {}

    def needs_body(self, headers: Mapping[str, str]) -> bool:
        """Signed requests are checked over the body, so they are authenticated after reading it."""
        return SIGNATURE_HEADER in headers

    def check_bearer(self, authorization: str | None) -> Principal:
        if self.open:
            return Principal("open")
        if authorization is not None and (known := self._accepted.get(authorization)) is not None:
            return known
        if not authorization:
            raise AuthError("missing credentials: send Authorization: Bearer <key> or a signature")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Authorization must be 'Bearer <key>'")
        presented = hashlib.sha256(token.strip().encode()).digest()
        matched = False
        for digest in self._key_digests:
            matched |= hmac.compare_digest(presented, digest)
        if not matched:
            raise AuthError("unknown API key")
        principal = Principal("api-key")
        if len(self._accepted) < _MAX_REMEMBERED:
            self._accepted[authorization] = principal
        return principal

    def check_signature(self, headers: Mapping[str, str], body: bytes) -> Principal:
        """Verify X-Giftwheel-Signature over timestamp + body, within the replay window.

        A replay inside the window carries the same events, which ingest dedupes by eventId; a
        replay outside it is refused here.
        """
        signature = headers.get(SIGNATURE_HEADER, "")
        timestamp = headers.get(TIMESTAMP_HEADER, "")
        if not self._secrets:
            raise AuthError("signed requests are not enabled on this server")
        if (seconds := unsigned(timestamp, _MAX_TIMESTAMP_DIGITS)) is None:
            raise AuthError(f"{TIMESTAMP_HEADER} must be Unix seconds")
        skew_s = abs(self._clock.wall_ms() / 1000 - seconds)
        if skew_s > self._window_s:
            raise AuthError(f"signature timestamp outside the {self._window_s} s replay window")
        matched = False
        for secret in self._secrets:
            matched |= hmac.compare_digest(sign(secret, timestamp, body), signature)
        if not matched:
            raise AuthError("bad signature")
        return Principal("signature")
