"""agentmon.stack.bcrypt: a bcrypt hash with a salt derived from a seed, so re-runs render the
same file; every role's template uses this one filter (documented in bcrypt.yml beside it).
ansible.builtin.password_hash needs passlib, which fails with bcrypt >= 5; this uses the bcrypt
package and falls back to the C library's crypt().
"""

from __future__ import annotations

import hashlib
from typing import Any

from ansible.errors import AnsibleFilterError

BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def bcrypt_salt(seed: str) -> str:
    """22 characters of bcrypt's base64 over 16 bytes of sha256(seed)."""
    raw = int.from_bytes(hashlib.sha256(seed.encode("utf-8")).digest()[:16], "big")
    # bcrypt encodes 128 bits as 22 characters, the last one carrying 2 bits of padding.
    raw <<= 4
    return "".join(BCRYPT_ALPHABET[(raw >> (6 * (21 - i))) & 63] for i in range(22))


def bcrypt_hash(password: Any, seed: str, rounds: int = 12) -> str:
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("agentmon.stack.bcrypt: the password must be a non-empty string")
    if len(password.encode("utf-8")) > 72:
        raise AnsibleFilterError(
            "agentmon.stack.bcrypt: bcrypt uses at most 72 bytes of a password")
    if not 4 <= int(rounds) <= 31:
        raise AnsibleFilterError("agentmon.stack.bcrypt: rounds must be 4..31")
    setting = f"$2b${int(rounds):02d}${bcrypt_salt(seed)}"
    try:
        import bcrypt as bcrypt_lib
    except ImportError:
        bcrypt_lib = None
    if bcrypt_lib is not None:
        return bcrypt_lib.hashpw(password.encode("utf-8"), setting.encode("ascii")).decode("ascii")
    try:
        import crypt  # deprecated, gone in Python 3.13; glibc's libxcrypt knows $2b$
    except ImportError:
        crypt = None
    hashed = crypt.crypt(password, setting) if crypt is not None else None
    if not hashed or not hashed.startswith("$2b$"):
        raise AnsibleFilterError("agentmon.stack.bcrypt: install the Python package bcrypt on the "
                                 "controller (pip install bcrypt)")
    return hashed


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"bcrypt": bcrypt_hash}
