"""Redaction and truncation of payloads before anything touches disk.

- Values under keys that look like secrets (password, passwd, secret, token, api key,
  authorization, cookie, credentials, private key; any case and spelling of separators, nested
  anywhere) become ``"[REDACTED]"``, whatever their type.
- Inside strings, ``<secret-like name>: value`` / ``<name>=value`` assignments (an
  ``Authorization: Bearer ...`` header in a Bash command, ``GITHUB_TOKEN=...``) lose their value.
- Serialised JSON longer than the byte budget is replaced by a still-valid JSON object carrying a
  visible ``[TRUNCATED ...]`` marker and a prefix of the original text.
"""

from __future__ import annotations

import json
import re

TYPE_CHECKING = False  # typing costs ~3 ms of import per hook process; only checkers need it
if TYPE_CHECKING:
    from typing import Any

REDACTED = "[REDACTED]"
MAX_DEPTH = 64
TOO_DEEP = f"[TRUNCATED: nested deeper than {MAX_DEPTH} levels]"
MIN_PAYLOAD_BYTES = 256

# Substrings of a key, lower-cased with separators removed, that mark it as a secret.
_SECRET_JOINED = ("password", "passwd", "secret", "apikey", "authorization", "cookie",
                  "credential", "privatekey")
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_ASSIGNMENT_PATTERN = (
    r"(?i)(?<![A-Za-z0-9])"
    r"((?:[A-Za-z0-9]{1,32}[_-]){0,4}"
    r"(?:password|passwd|secret|token|api[_-]?key|authorization|cookie|credentials?"
    r"|private[_-]?key)"
    r"[\"']?\s*[:=]\s*)"
    r"(?:\"[^\"\n]*\"|'[^'\n]*'|(?:bearer|basic|token)\s+[^\s\"',;&|]+|[^\s\"',;&|]+)"
)

_text_secret: re.Pattern[str] | None = None


def is_secret_key(key: str) -> bool:
    """True when a mapping key names a secret: ``api_key``, ``X-Api-Key``, ``accessToken``...

    Counts such as ``totalTokens`` or ``input_tokens`` are not secrets: ``token`` must end a word.
    """
    words = [w.lower() for w in _WORD_SPLIT.split(key) if w]
    joined = "".join(words)
    if any(marker in joined for marker in _SECRET_JOINED):
        return True
    return any(word.endswith("token") for word in words)


def redact_text(text: str) -> str:
    """Blank the values of ``name=value`` / ``name: value`` assignments of secret-like names."""
    global _text_secret  # compiled on first use: most events never need it
    if not _might_hold_secret(text):
        return text
    if _text_secret is None:
        _text_secret = re.compile(_ASSIGNMENT_PATTERN)
    return _text_secret.sub(lambda m: m.group(1) + REDACTED, text)


def _might_hold_secret(text: str) -> bool:
    # cheap pre-filter: the regex runs only on strings that mention a marker at all
    lowered = text.lower()
    return any(m in lowered for m in ("pass", "secret", "token", "key", "auth", "cookie",
                                      "credential"))


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of a JSON value with secrets replaced; structures nested too deep are cut."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict | list) and depth >= MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        return {
            str(k): REDACTED if is_secret_key(str(k)) else redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v, depth + 1) for v in value]
    return value


def dump(value: Any) -> str:
    """Compact JSON, ASCII only (lone surrogates and NULs are escaped, never stored raw)."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def truncate_json(text: str, max_bytes: int) -> str:
    """``text`` (ASCII JSON) if it fits in ``max_bytes``, else a valid JSON object with a marker.

    The replacement is ``{"truncated":"[TRUNCATED: N bytes, first K shown]","preview":"..."}``
    and is never longer than ``max_bytes``.
    """
    if len(text) <= max_bytes:
        return text
    keep = max(0, max_bytes - 96)
    while True:
        marker = f"[TRUNCATED: {len(text)} bytes, first {keep} shown]"
        out = dump({"truncated": marker, "preview": text[:keep]})
        if len(out) <= max_bytes or keep == 0:
            return out
        keep = max(0, keep - (len(out) - max_bytes))


def payload(value: Any, max_bytes: int) -> str:
    """Redact, serialise and truncate one payload for a JSON column."""
    return truncate_json(dump(redact(value)), max_bytes)


def text(value: str, max_bytes: int) -> str:
    """Redact and truncate free text (a prompt, an error) to ``max_bytes`` UTF-8 bytes."""
    clean = redact_text(value).encode("utf-8", "replace")
    if len(clean) <= max_bytes:
        return clean.decode("utf-8")
    marker = f" [TRUNCATED: {len(clean)} bytes]"
    kept = clean[: max(0, max_bytes - len(marker))].decode("utf-8", "ignore")
    return kept + marker
