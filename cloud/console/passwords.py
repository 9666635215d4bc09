"""Operator password hashes (scrypt, salted): what the settings hold, never the password itself.

Format: ``scrypt$<n>$<r>$<p>$<salt, base64>$<key, base64>``. scrypt is in the standard library
(hashlib.scrypt, OpenSSL's) and memory-hard, so a leaked settings file is costly to brute-force.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

SCHEME = "scrypt"
# 2^14 blocks of 8 x 128 bytes: 16 MiB and a few tens of ms per check (RFC 7914's interactive figure).
_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_KEY_BYTES = 32
# OpenSSL refuses scrypt above its default 32 MiB memory limit; the hash's own n, r are allowed up to this.
_MAX_MEM_BYTES = 64 * 1024 * 1024


class BadPasswordHash(ValueError):
    """A settings value that is not a hash this module made."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _derive(password, salt, _N, _R, _P)
    return f"{SCHEME}${_N}${_R}${_P}${_b64(salt)}${_b64(key)}"


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAX_MEM_BYTES, dklen=_KEY_BYTES
    )


def parse_hash(value: str) -> tuple[int, int, int, bytes, bytes]:
    parts = value.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise BadPasswordHash("not a password hash: make one with `giftwheel ctl hash-password`")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except ValueError:
        raise BadPasswordHash(
            "malformed password hash: make one with `giftwheel ctl hash-password`"
        ) from None
    if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16 or 128 * n * r > _MAX_MEM_BYTES:
        raise BadPasswordHash("password hash parameters out of range")
    if len(salt) < 8 or len(key) < 16:
        raise BadPasswordHash("password hash salt or key too short")
    return n, r, p, salt, key


def verify_password(password: str, stored: str) -> bool:
    n, r, p, salt, key = parse_hash(stored)
    return hmac.compare_digest(_derive(password, salt, n, r, p), key)


@functools.cache
def dummy_hash() -> str:
    """Checked for an unknown operator name too, so the answer's timing does not tell names apart."""
    return hash_password(secrets.token_urlsafe(16))
