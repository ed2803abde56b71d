"""Redaction and truncation of payloads before anything touches disk.

- Values under keys that name a secret (:func:`is_secret_key`; any case and spelling of
  separators, nested anywhere) become ``"[REDACTED]"``, whatever their type.
- Inside strings (:func:`redact_text`) a few combined patterns blank: assignments
  ``name=value`` / ``name: value`` / ``"name": "value"`` whose name is a secret name wherever
  the secret word sits in it (``AWS_SECRET_ACCESS_KEY=``, ``export PGPASSWORD=``); whole
  ``Authorization``/``Cookie`` header values; command-line secrets (``--password pw``,
  ``mysql -ppw``, ``curl -u user:pw``, ``sshpass -p pw``); passwords in URLs
  (``postgres://app:pw@host``); private-key blocks; ``.netrc`` and SQL passwords; signed-URL
  signatures and webhook URLs; and tokens recognisable by their shape wherever they stand
  (``AKIA...``, ``ghp_...``, ``glpat-...``, ``xoxb-...``, ``sk-...``, ``sk_live_...``, JWTs...).
  Each pattern is compiled and run only when its trigger substrings occur in the text: compiling
  is a cost every hook process pays anew.
- Serialised JSON longer than the byte budget is replaced by a still-valid JSON object carrying a
  visible ``[TRUNCATED ...]`` marker and a prefix of the original text.

The patterns have no nested unbounded repetition and every candidate match moves the scan
forward, so redaction is linear in the text's length.
"""

from __future__ import annotations

import functools
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
_SECRET_JOINED = ("password", "passwd", "passphrase", "secret", "apikey", "authorization",
                  "cookie", "credential", "privatekey", "accesskey", "accountkey", "sshkey",
                  "signingkey", "encryptionkey", "masterkey", "storepass", "keypass",
                  "databaseurl", "dburl", "connectionstring", "connstr")
# Words that mark a secret when they end the key: DB_PASS, MYSQL_PWD, basic_auth, SENTRY_DSN.
_SECRET_LAST_WORDS = frozenset(("pass", "pwd", "pw", "auth", "dsn"))
# A flag such as --password-stdin or --token-file names where a secret is, not the secret.
_NOT_A_VALUE_WORDS = frozenset(("stdin", "file", "path", "env", "prompt", "helper", "command"))
_TYPE_NAMES = frozenset(("str", "string", "String", "bytes", "SecretStr", "SecretBytes",
                         "Optional[str]", "Optional[SecretStr]"))
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"

# Values: a quoted string (also with JSON-escaped quotes), else one shell word.
_QUOTED = r""""(?:[^"\\\n]|\\.)*"|'[^'\n]*'|\\"(?:[^\\\n]|\\[^"])*\\\""""
_WORD = r"""[^\s"',;&|<]+"""
_MARKER = r"(?:pass|pw|secret|token|key|auth|cookie|credential|dsn|url|conn)"

# The text rules, a few combined patterns. Each is compiled (a cost of every hook process that
# needs it) and run only on text holding one of its trigger substrings. In each alternative the
# last group, named ``*v`` or ``tok``, is the secret; m.lastgroup says which alternative matched.
#
# name=value, name: value, "name": "value", name => value, `--name value`, `PASSWORD 'pw'`,
# `IDENTIFIED BY 'pw'`, .netrc's `login x password pw`. The match starts at a marker; _keep
# extends the name to the left and checks it with is_secret_key. After "name: " or "name = "
# (a config line, an HTTP header) the value is the words up to the end of the line, so every
# pair of a Cookie header goes.
_NAMES = (
    rf"(?i)(?P<name>(?:{_MARKER}[\w.-]{{0,40}}|identified[ \t]+by)"
    r"(?:\\?[\"']?[ \t]*(?::[ \t]*[\w.|\[\], ]{1,40}?[ \t]=(?!=)|=>|[:=]=?)(?![:=])[ \t]*"
    r"|[ \t]+|>(?=[^<\s])))"
    rf"(?P<namev>{_QUOTED}|(?:bearer|basic|token|digest)[ \t]+{_WORD}"
    r"|(?:(?<=[:=][ \t])|(?<=[ \t]{2}))[^\s\"'\\]+(?:[ \t]+[^\s\"'\\]+){0,16}"
    rf"|{_WORD})"
)
_NAMES_TRIGGERS = ("pass", "pw", "secret", "token", "key", "auth", "cookie", "credential",
                   "dsn", "url", "conn", "identified")

# Private-key blocks and tokens recognisable by their shape wherever they stand (case matters).
_TOKENS = (
    r"(?P<pem>-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)"
    r"(?P<pemv>(?:[^-]|-(?!----END))*(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)?)"
    r"|(?<![\w-])(?P<tok>(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"
    r"|(?:gh[pousr]_|npm_|hf_)[A-Za-z0-9]{30,}"
    r"|(?:github_pat_|gl(?:pat|dt|ptt|rt|cbt|soat|ft)-|sk-|dckr_pat_|ATBB|ATATT|xox[abposre]-"
    r"|xapp-|[rs]k_(?:live|test)_|whsec_|pypi-AgE|GOCSPX-|ya29\.|AIza|hv[sb]\.|glsa_|glc_"
    r"|sntry[su]_|lin_api_|sbp_|dop_v1_|shp(?:at|ss|ca|pa)_|rubygems_|dp\.pt\.|oy2|dapi"
    r"|NRAK-|PMAK-)[\w-]{20,}"
    r"|SK[0-9a-f]{32}|key-[0-9a-z]{32}|SG\.[\w-]{16,}\.[\w-]{16,}|AGE-SECRET-KEY-1[0-9A-Z]{50,}"
    r"|\w{14}\.atlasv1\.[\w-]{60,}|eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]*|(?:bot)?\d{8,10}:AA[\w-]{30,}"
    r"|[\w~.]{3}\dQ~[\w~.-]{31,})"
)
_TOKENS_TRIGGERS = (
    "PRIVATE KEY", "AKIA", "ASIA", "ABIA", "ACCA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
    "npm_", "hf_", "github_pat_", "glpat-", "gldt-", "glptt-", "glrt-", "glcbt-", "glsoat-",
    "glft-", "glsa_", "glc_", "sk-", "dckr_pat_", "ATBB", "ATATT", "xox", "xapp-",
    "k_live_", "k_test_", "whsec_", "pypi-AgE", "GOCSPX-", "ya29.", "AIza", "hvs.", "hvb.",
    "sntry", "lin_api_", "sbp_", "dop_v1_", "shp", "rubygems_", "dp.pt.", "oy2", "dapi",
    "NRAK-", "PMAK-", "SK", "key-", "SG.", "AGE-SECRET-KEY-", "atlasv1", "eyJ", ":AA", "Q~",
)

# Passwords in URLs (scheme://user:password@host), signed URLs, webhook URLs.
_URLS = (
    r"(?i)(?P<url>://[^\s/?#@:\"'<>\\]{0,128}:)(?P<urlv>[^\s/\"'<>\\]{1,256}(?=@))"
    r"|(?P<qp>[?&](?:sig|(?:x-amz-|x-goog-)?signature)=)(?P<qpv>[^&\s\"'#<>]+)"
    r"|(?P<hook>hooks\.slack\.com/(?:services|workflows|triggers)/"
    r"|discord(?:app)?\.com/api/webhooks/|webhook\.office\.com/webhookb2/)(?P<hookv>[\w/@+-]+)"
)
_URLS_TRIGGERS = ("://", "sig=", "signature=")

# Short flags whose value is a secret only after certain commands: mysql -ppw, curl -u a:b.
_COMMANDS = (
    r"(?P<cmd>(?<![\w-])(?:mysql[a-z]*|mariadb[a-z-]*|sshpass|mongo[a-z]*|login|7z[a-z]*"
    r"|zip|unzip|redis-cli|curl)(?![\w-]))"
    r"|(?P<short>(?<=[ \t])(?:-[pPabuU]|--(?:proxy-)?user(?=[ \t=]))[ \t]*=?[ \t]*)"
    rf"(?P<shortv>(?!-)(?:{_QUOTED}|{_WORD}))"
)
_COMMANDS_TRIGGERS = ("mysql", "mariadb", "sshpass", "mongo", "login", "7z", "zip", "redis-cli",
                      "curl")
_SHORT_FLAGS = {"p": ("-p",), "zip": ("-P",), "redis-cli": ("-a",),
                "curl": ("-u", "-U", "--user", "--proxy-user", "-b")}
_SEGMENT_END = re.compile(r"[\n|;&]")

# (pattern, its triggers, whether triggers are looked for in the lower-cased text, minimum
# length of a text that can hold a match); compiled on first use.
_RULES = (
    (_TOKENS, _TOKENS_TRIGGERS, False, 20),
    (_URLS, _URLS_TRIGGERS, True, 8),
    (_COMMANDS, _COMMANDS_TRIGGERS, True, 8),
    (_NAMES, _NAMES_TRIGGERS, True, 4),
)
_compiled: list[re.Pattern[str] | None] = [None] * len(_RULES)


@functools.lru_cache(maxsize=4096)  # the same keys and names come again and again
def is_secret_key(key: str) -> bool:
    """True when a mapping key names a secret: ``api_key``, ``X-Api-Key``, ``DB_PASS``...

    Counts such as ``totalTokens`` or ``input_tokens`` are not secrets: ``token`` must end a word.
    """
    words = [w.lower() for w in _WORD_SPLIT.split(key) if w]
    if not words:
        return False
    joined = "".join(words)
    if any(marker in joined for marker in _SECRET_JOINED):
        return True
    if words[-1] in _SECRET_LAST_WORDS:
        return True
    return any(word.endswith("token") for word in words)


def _command_family(word: str) -> str:
    word = word.lower()
    return word if word in _SHORT_FLAGS else "p"


def _full_name(text: str, start: int, matched: str) -> str:
    """An assignment's name: its matched part up to the separator, extended to the left."""
    before = text[max(0, start - 64):start]
    left = before[len(before.rstrip(_NAME_CHARS)):]
    return left + matched[:len(matched) - len(matched.lstrip(_NAME_CHARS))]


def _is_type_annotation(value: str) -> bool:
    """``str`` in ``password: str`` or ``def f(password: str) -> bool``."""
    first = value.split(None, 1)
    word = first[0]
    return word.rstrip(",;)") in _TYPE_NAMES and (len(first) == 1 or word[-1] in ",;)")


def _keep(m: re.Match[str], kind: str, context: tuple[str, int]) -> bool:
    """True when a candidate is not a secret after all: its value is kept (and scanned on)."""
    if kind == "shortv":
        family, end = context
        flag = m.group("short").strip(" \t=")
        if m.start() >= end or flag not in _SHORT_FLAGS[family]:
            return True
        return flag in ("-u", "-U", "--user", "--proxy-user") and ":" not in m.group("shortv")
    if kind != "namev":
        return False
    text, start, matched, value = m.string, m.start(), m.group("name"), m.group("namev")
    name = _full_name(text, start, matched)
    if matched.endswith(">"):  # <password>pw</password>
        begin = start - len(name) + len(matched) - 1
        return text[begin - 1:begin] != "<" or not is_secret_key(name)
    if "=" in matched or ":" in matched:
        if not is_secret_key(name):
            return True
        # PWD=/home/dev/project in `env` output is the working directory, not a password
        if name.upper() in ("PWD", "OLDPWD"):
            return value[:1] in ("/", "~")
        # a type annotation, `password: str`, is not a value
        return _is_type_annotation(value)
    # the name and its value are separated by blanks only
    if matched[:10].lower() == "identified":
        return False
    words = [w.lower() for w in _WORD_SPLIT.split(name) if w]
    if name.startswith("-"):  # a command-line flag: --password pw, -storepass pw
        return (value.startswith("-") or not is_secret_key(name) or words[0] == "no"
                or words[-1] in _NOT_A_VALUE_WORDS)
    if "_" in name:  # a machine name, not prose: aws configure set aws_secret_access_key KEY
        return not is_secret_key(name)
    if words[-1] in ("password", "passwd", "pass"):
        # SQL's PASSWORD 'pw'; .netrc's `machine h login bob password pw`, also one line of it
        if value[:1] in ("'", '"') or "login" in text[max(0, start - 200):start]:
            return False
        line_start = text.rfind("\n", 0, start) + 1
        rest = text[m.end():m.end() + 200].lstrip(" \t")
        return bool(text[line_start:start].strip(" \t+-")) or rest[:1] not in ("", "\n", "\r")
    return True


def _apply(pattern: re.Pattern[str], text: str) -> str:
    """``text`` with the secret group of every accepted match of ``pattern`` replaced."""
    search = pattern.search
    m = search(text)
    if m is None:
        return text
    parts: list[str] = []
    done = 0  # text[:done] is settled and in parts
    context = ("p", -1)  # command family of the current shell segment and where it ends
    while m is not None:
        kind = m.lastgroup or ""
        if kind == "cmd":
            end = _SEGMENT_END.search(text, m.end())
            context = (_command_family(m.group("cmd")), end.start() if end else len(text))
            m = search(text, m.end())
            continue
        value_start = m.start(kind)
        if _keep(m, kind, context):
            m = search(text, value_start)  # the value may itself hold a secret
            continue
        parts.append(text[done:value_start])
        parts.append(REDACTED)
        done = m.end()
        m = search(text, done)
    parts.append(text[done:])
    return "".join(parts)


def redact_text(text: str) -> str:
    """``text`` with every secret the text rules recognise replaced by ``[REDACTED]``."""
    lowered = ""
    for index, (source, triggers, fold, shortest) in enumerate(_RULES):
        if len(text) < shortest:
            continue
        if fold and not lowered:
            lowered = text.lower()
        haystack = lowered if fold else text
        if not any(trigger in haystack for trigger in triggers):
            continue
        pattern = _compiled[index]
        if pattern is None:
            pattern = _compiled[index] = re.compile(source)
        redacted = _apply(pattern, text)
        if redacted != text:
            text, lowered = redacted, ""
    return text


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
        return _key_block_lines([redact(v, depth + 1) for v in value], value)
    return value


def _key_block_lines(out: list[Any], items: list[Any]) -> list[Any]:
    """Blank the lines of a key block split over list items (an Edit's ``structuredPatch``)."""
    inside = False
    for index, item in enumerate(items):
        if not isinstance(item, str):
            continue
        if inside:
            if "-----END" in item:
                inside = False
            else:
                out[index] = REDACTED
        elif "PRIVATE KEY" in item and "-----BEGIN" in item:
            inside = "-----END" not in item
    return out


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
