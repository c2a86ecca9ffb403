"""Password hashes (Argon2id, argon2-cffi) and bearer tokens (random, stored as SHA-256 digests).

Passwords are hashed with OWASP's minimum Argon2id parameters (19 MiB, 2 passes, 1 lane): about 30 ms
a hash on an idle core. The parameters travel inside each hash, so raising them later leaves old hashes
verifiable. A verified (user, password) pair is remembered by an HMAC of the password under a key that
lives only in this process, and only as long as the user's hash is the one it was verified against: a
password change or a deleted user invalidates it on every replica as soon as its view applied the change.

A token is ``mlt_<id>_<secret>``: the id finds its record, the secret (32 random bytes) is checked
against its SHA-256 digest in constant time. A fast digest is enough for a 256-bit random secret (no
dictionary to attack); only the digest is logged as an event.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX = "mlt_"
CACHE_SIZE = 10_000

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> tuple[str, str, str]:
    """(token as given to the user, token id, digest of its secret)."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return f"{TOKEN_PREFIX}{token_id}_{secret}", token_id, token_digest(secret)


def split_token(token: str) -> tuple[str, str] | None:
    """(token id, secret) of a well-formed token, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    token_id, sep, secret = token[len(TOKEN_PREFIX) :].partition("_")
    return (token_id, secret) if sep and token_id and secret else None


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def digests_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class VerifiedPasswords:
    """(user, HMAC of the password) -> the hash it was verified against; bounded, oldest dropped first."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._key = secrets.token_bytes(32)
        self._size = size
        self._seen: OrderedDict[tuple[str, bytes], str] = OrderedDict()
        self._lock = threading.Lock()

    def _mac(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode(), "sha256").digest()

    def known(self, username: str, password: str, current_hash: str) -> bool:
        with self._lock:
            return self._seen.get((username, self._mac(password))) == current_hash

    def remember(self, username: str, password: str, verified_hash: str) -> None:
        with self._lock:
            self._seen[(username, self._mac(password))] = verified_hash
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)
