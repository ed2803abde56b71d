"""Authentication of a request's Authorization header: basic auth against the web config's
bcrypt hashes and a bearer token.

A bcrypt verification is paid once per distinct credential: results are cached under an HMAC
(random per-process key) of user and password, so the cache never holds a password; right and
wrong credentials have separate caches, so a flood of wrong passwords cannot evict the right
ones. Unknown users cost the same verification as known ones. bcrypt runs one at a time; the
server calls it on its own worker thread, never on the event loop.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict

import bcrypt


class Authenticator:
    """Checks an Authorization header against basic_auth_users and the bearer token."""

    def __init__(self, users: dict[str, bytes], bearer_token: bytes | None = None,
                 cache_size: int = 256) -> None:
        self._users = [(name.encode("utf-8"), hashed) for name, hashed in users.items()]
        # A random password's hash at the highest configured cost: unknown users pay the same
        # verification time as known ones (no user enumeration by timing).
        cost = max((int(hashed[4:6]) for _, hashed in self._users), default=4)
        self._dummy_hash = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))
        self._token_digest = (hashlib.sha256(bearer_token).digest()
                              if bearer_token is not None else None)
        self._key = secrets.token_bytes(32)
        # Separate caches: a flood of wrong passwords cannot evict the right ones.
        self._good: OrderedDict[bytes, None] = OrderedDict()
        self._bad: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()  # one bcrypt at a time: floods cost one core
        self.bcrypt_calls = 0

    @property
    def enabled(self) -> bool:
        return bool(self._users) or self._token_digest is not None

    def check(self, header: str | None) -> bool:
        """The decision; may run bcrypt (keep it off the event loop)."""
        verdict = self.quick(header)
        if verdict is not None:
            return verdict
        user, password = self._basic(header)  # type: ignore[misc]
        return self._verify(user, password)

    def quick(self, header: str | None) -> bool | None:
        """The decision when it needs no bcrypt run (cached, bearer, malformed), else None."""
        if not self.enabled:
            return True
        if not header:
            return False
        scheme, _, credentials = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self._token_digest is not None:
            given = hashlib.sha256(credentials.strip().encode("utf-8", "replace")).digest()
            return hmac.compare_digest(given, self._token_digest)
        if scheme != "basic" or not self._users:
            return False
        parsed = self._basic(header)
        if parsed is None:
            return False
        with self._cache_lock:
            key = self._cache_key(*parsed)
            if key in self._good:
                self._good.move_to_end(key)
                return True
            if key in self._bad:
                self._bad.move_to_end(key)
                return False
        return None

    @staticmethod
    def _basic(header: str | None) -> tuple[bytes, bytes] | None:
        _, _, credentials = (header or "").strip().partition(" ")
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        user, sep, password = decoded.partition(b":")
        return (user, password) if sep else None

    def _cache_key(self, user: bytes, password: bytes) -> bytes:
        return hmac.new(self._key, len(user).to_bytes(4, "big") + user + password,
                        hashlib.sha256).digest()

    def _verify(self, user: bytes, password: bytes) -> bool:
        hashed = self._dummy_hash
        known = False
        for name, candidate in self._users:  # no early exit: same work for every name
            if hmac.compare_digest(name, user):
                hashed, known = candidate, True
        with self._bcrypt_lock:
            self.bcrypt_calls += 1
            try:
                ok = bcrypt.checkpw(password, hashed) and known
            except ValueError:  # longer than bcrypt's 72 bytes
                ok = False
        key = self._cache_key(user, password)
        with self._cache_lock:
            cache = self._good if ok else self._bad
            cache[key] = None
            if len(cache) > self._cache_size:
                cache.popitem(last=False)
        return ok
