"""Redaction of secrets in payloads before anything touches disk (``agentmon.hook.bounds`` then
cuts them to size).

- Values under keys that name a secret (:func:`is_secret_key`; any case and spelling of
  separators, nested anywhere) become ``"[REDACTED]"``, whatever their type.
- Inside strings (:func:`redact_text`) a few combined patterns blank: assignments
  ``name=value`` / ``name: value`` / ``"name": "value"`` whose name is a secret name wherever
  the secret word sits in it (``AWS_SECRET_ACCESS_KEY=``, ``export PGPASSWORD=``); whole
  ``Authorization``/``Cookie`` header values; command-line secrets (``--password pw``,
  ``mysql -ppw``, ``curl -u user:pw``, ``sshpass -p pw``); passwords in URLs
  (``postgres://app:pw@host``); private-key blocks; ``.netrc`` and SQL passwords; signed-URL
  signatures and webhook URLs; and tokens recognisable by their shape wherever they stand
  (``AKIA...``, ``ghp_...``, ``glpat-...``, ``xoxb-...``, ``sk-...``, ``sk_live_...``, JWTs...);
  tokens as a URL's user (``https://<40 hex>@github.com/``); passwords given as plain arguments
  or piped to a reader of secrets (:mod:`agentmon.hook.shellargs`: ``htpasswd -b``,
  ``echo pw | sudo -S``).
  Each pattern is compiled and run only when its trigger substrings occur in the text (or the
  text is long): compiling is a cost every hook process pays anew.

The patterns have no nested unbounded repetition and every candidate match moves the scan
forward, so redaction is linear in the text's length.
"""

from __future__ import annotations

import functools
import re

from agentmon.hook import shellargs

TYPE_CHECKING = False  # typing costs ~3 ms of import per hook process; only checkers need it
if TYPE_CHECKING:
    from typing import Any

REDACTED = "[REDACTED]"
MAX_DEPTH = 64
TOO_DEEP = f"[TRUNCATED: nested deeper than {MAX_DEPTH} levels]"

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

# The text rules: a few combined patterns. Each is compiled (a cost every hook process pays
# anew) and run only on text holding one of its trigger substrings. Every alternative starts
# with a literal, so the regex engine skips most positions at C speed; boundaries that cannot be
# said that way are checked in Python on the (rare) candidates. The last group of a match names
# its alternative (m.lastgroup); the secret is that group (``*v``) or the whole match (tags).
#
# name=value, name: value, "name": "value", name => value, <name>value, `--name value`,
# `PASSWORD 'pw'`, `IDENTIFIED BY 'pw'`, .netrc's `login x password pw`. Run on the lower-cased
# text; the match starts at a marker and _keep extends the name to the left and checks it with
# is_secret_key. After "name: " or "name = " (a config line, an HTTP header) the value is the
# words up to the end of the line, so every pair of a Cookie header goes.
_NAMES = (
    r"(?P<name>(?:pass|pw|secret|token|key|auth|cookie|credential|dsn|url|conn"
    r"|identified[ \t]+by)[\w.-]{0,40}"
    r"(?:\\?[\"']?[ \t]*(?::[ \t]*[\w.|\[\], ]{1,40}?[ \t]=(?!=)|=>|[:=]=?)(?![:=])[ \t]*"
    r"|[ \t]+|>(?=[^<\s])))"
    rf"(?P<namev>{_QUOTED}|(?:bearer|basic|token|digest)[ \t]+{_WORD}"
    r"|(?:(?<=[:=][ \t])|(?<=[ \t]{2}))[^\s\"'\\]+(?:[ \t]+[^\s\"'\\]+){0,16}"
    rf"|{_WORD}|[\"'][^\s\"'<]+)"
)
_NAMES_TRIGGERS = ("pass", "pw", "secret", "token", "key", "auth", "cookie", "credential",
                   "dsn", "url", "conn", "identified")

# Private-key blocks and tokens recognisable by their shape wherever they stand (case matters).
_WORD_TOKEN_PREFIXES = (  # followed by 20 or more of [A-Za-z0-9_-]
    "github_pat_", "glpat-", "gldt-", "glptt-", "glrt-", "glcbt-", "glsoat-", "glft-", "glsa_",
    "glc_", "sk-", "sk_live_", "sk_test_", "sntry[su]_", "sbp_", "shp(?:at|ss|ca|pa)_",
    "rk_live_", "rk_test_", "rubygems_", "dckr_pat_", "dop_v1_", "dp\\.pt\\.", "dapi", "ATBB",
    "ATATT", "AIza", "xox[abposre]-", "xapp-", "whsec_", "pypi-AgE", "GOCSPX-", "ya29\\.",
    "hv[sb]\\.", "lin_api_", "oy2", "NRAK-", "PMAK-",
)
_FIRST: dict[str, list[str]] = {}
for _prefix in _WORD_TOKEN_PREFIXES:
    _FIRST.setdefault(_prefix[0], []).append(_prefix[1:])
_TOKEN_SHAPES = (  # one branch per first character keeps the pattern short to compile
    "A(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}",
    *(f"{p}[A-Za-z0-9]{{30,}}" for p in ("gh[pousr]_", "npm_", "hf_")),
    *(f"{first}(?:{'|'.join(rests)})[\\w-]{{20,}}" for first, rests in _FIRST.items()),
    "SK[0-9a-f]{32}", "key-[0-9a-z]{32}", r"SG\.[\w-]{16,}\.[\w-]{16,}",
    "AGE-SECRET-KEY-1[0-9A-Z]{50,}", r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]*",
)
_TOKENS = "|".join((
    r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    r"(?P<pemv>(?:[^-]|-(?!----END))*(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)?)",
    *(f"{shape}(?P<tok{n}>)" for n, shape in enumerate(_TOKEN_SHAPES)),
    # anchored on their middle; _token_start finds where they begin
    r"\.atlasv1\.[\w-]{60,}(?P<atlas>)",  # Terraform Cloud: 14 characters, .atlasv1., ...
    r":AA[\w-]{30,}(?P<telegram>)",  # Telegram bot: [bot]123456789:AA...
    r"Q~[\w~.-]{31,}(?P<azure>)",  # Azure AD client secret: abc8Q~...
))
_TOKENS_TRIGGERS = (
    "PRIVATE KEY", "AKIA", "ASIA", "ABIA", "ACCA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
    "npm_", "hf_", "github_pat_", "glpat-", "gldt-", "glptt-", "glrt-", "glcbt-", "glsoat-",
    "glft-", "glsa_", "glc_", "sk-", "dckr_pat_", "ATBB", "ATATT", "xox", "xapp-",
    "k_live_", "k_test_", "whsec_", "pypi-AgE", "GOCSPX-", "ya29.", "AIza", "hvs.", "hvb.",
    "sntry", "lin_api_", "sbp_", "dop_v1_", "shp", "rubygems_", "dp.pt.", "oy2", "dapi",
    "NRAK-", "PMAK-", "SK", "key-", "SG.", "AGE-SECRET-KEY-", "atlasv1", "eyJ", ":AA", "Q~",
)

# Passwords in URLs (scheme://user:password@host), signed URLs, webhook URLs (lower-cased text).
_SIGNATURE = r"(?:sig|(?:x-amz-|x-goog-)?signature)=(?P<{}>[^&\s\"'#<>]+)"
_URLS = (
    r"://(?P<urltok>[a-z0-9_-]{20,256})(?=@|:x-oauth-basic@)"  # https://<token>@github.com/...
    r"|://(?P<url>[^\s/?#@:\"'<>\\]{0,128}:)(?P<urlv>[^\s/\"'<>\\]{1,256}(?=@))"
    r"|\?" + _SIGNATURE.format("sigv") + r"|&" + _SIGNATURE.format("sigv2")
    + r"|hooks\.slack\.com/(?:services|workflows|triggers)/(?P<hookv>[\w/@+-]+)"
    r"|discord(?:app)?\.com/api/webhooks/(?P<hookv2>[\w/@+-]+)"
    r"|webhook\.office\.com/webhookb2/(?P<hookv3>[\w/@+-]+)"
)
_URLS_TRIGGERS = ("://", "sig=", "signature=")

# Short flags whose value is a secret only after certain commands: mysql -ppw, curl -u a:b.
# _keep looks for the command in the flag's shell segment.
_COMMANDS = (
    r"-(?<=[ \t]-)(?P<short>(?:[pPabuU]|-(?:proxy-)?user(?=[ \t=]))[ \t]*=?[ \t]*)"
    rf"(?P<shortv>(?!-)(?:{_QUOTED}|{_WORD}))"
)
_COMMANDS_TRIGGERS = ("mysql", "mariadb", "sshpass", "mongo", "login", "7z", "zip", "redis-cli",
                      "curl")
_COMMAND_WORD = (r"(?<![\w-])(mysql[a-z]*|mariadb[a-z-]*|sshpass|mongo[a-z]*|login|7z[a-z]*"
                 r"|zip|unzip|redis-cli|curl)(?![\w-])")
_SHORT_FLAGS = {"p": ("-p",), "zip": ("-P",), "unzip": ("-P",), "redis-cli": ("-a",),
                "curl": ("-u", "-U", "--user", "--proxy-user", "-b")}

# (pattern, its triggers, whether it runs on the lower-cased text, shortest text it can match);
# compiled on first use. Above this length the triggers are not looked for: scanning for them
# would cost about as much as the patterns themselves.
_RULES = (
    (_TOKENS, _TOKENS_TRIGGERS, False, 20),
    (_URLS, _URLS_TRIGGERS, True, 8),
    (_COMMANDS, _COMMANDS_TRIGGERS, True, 8),
    (_NAMES, _NAMES_TRIGGERS, True, 4),
)
_ALWAYS_SCAN = 32 * 1024
_compiled: dict[str, re.Pattern[str]] = {}


def _pattern(source: str) -> re.Pattern[str]:
    pattern = _compiled.get(source)
    if pattern is None:
        pattern = _compiled[source] = re.compile(source)
    return pattern


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


def _full_name(text: str, start: int, end: int) -> str:
    """An assignment's name: ``text[start:end]`` up to the separator, extended to the left."""
    before = text[max(0, start - 64):start]
    matched = text[start:end]
    return (before[len(before.rstrip(_NAME_CHARS)):]
            + matched[:len(matched) - len(matched.lstrip(_NAME_CHARS))])


def _is_type_annotation(value: str) -> bool:
    """``str`` in ``password: str`` or ``def f(password: str) -> bool``."""
    first = value.split(None, 1)
    word = first[0]
    return word.rstrip(",;)") in _TYPE_NAMES and (len(first) == 1 or word[-1] in ",;)")


def _glued(text: str, start: int) -> bool:
    """True when ``text[start]`` continues a word: the token is part of something longer."""
    return start < 0 or (start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_-"))


def _token_start(kind: str, text: str, start: int) -> int:
    """Where the token anchored at ``start`` begins, or -1 when it is not one."""
    if kind == "atlas":
        begin = start - 14
        return begin if begin >= 0 and text[begin:start].isidentifier() else -1
    if kind == "telegram":
        begin = start
        while begin > 0 and start - begin < 10 and text[begin - 1] in "0123456789":
            begin -= 1
        if start - begin < 8:
            return -1
        return begin - 3 if text[max(0, begin - 3):begin] == "bot" else begin
    if kind == "azure":
        begin = start - 4
        head = text[max(0, begin):start]
        ok = begin >= 0 and head[3].isdigit() and all(c.isalnum() or c in "_~." for c in head)
        return begin if ok else -1
    return start


def _token_like(user: str) -> bool:
    """True when a URL's user name is a token (letters and digits), not a login like ``git``."""
    return any(c.isdigit() for c in user) and any(c.isalpha() for c in user)


def _keep_short(text: str, lowered: str, m: re.Match[str]) -> bool:
    """True unless the short flag carries a secret after the command of its shell segment."""
    start = m.start()
    limit = max(0, start - 1024)  # a bounded look back keeps the scan linear
    segment = max(limit, max(lowered.rfind(c, limit, start) for c in "\n|;&") + 1)
    commands = _pattern(_COMMAND_WORD).findall(lowered, segment, start)
    if not commands:
        return True
    family = commands[-1] if commands[-1] in _SHORT_FLAGS else "p"
    flag = text[start:m.end("short")].strip(" \t=")  # the "-" starts the match
    if flag not in _SHORT_FLAGS[family]:
        return True
    return flag in ("-u", "-U", "--user", "--proxy-user") and ":" not in m.group("shortv")


def _keep_name(text: str, lowered: str, m: re.Match[str]) -> bool:
    """True unless the name before the value names a secret (in the way its separator says)."""
    start, matched = m.start(), m.group("name")
    value = text[m.start("namev"):m.end("namev")]
    name = _full_name(text, start, m.end("name"))
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
    if matched.startswith("identified"):
        return False
    words = [w.lower() for w in _WORD_SPLIT.split(name) if w]
    if name.startswith("-"):  # a command-line flag: --password pw, -storepass pw
        return (value.startswith("-") or not is_secret_key(name) or words[0] == "no"
                or words[-1] in _NOT_A_VALUE_WORDS)
    if "_" in name:  # a machine name, not prose: aws configure set aws_secret_access_key KEY
        return not is_secret_key(name)
    if words[-1] in ("password", "passwd", "pass"):
        # SQL's PASSWORD 'pw'; .netrc's `machine h login bob password pw`, also one line of it
        if value[:1] in ("'", '"') or "login" in lowered[max(0, start - 200):start]:
            return False
        line_start = text.rfind("\n", 0, start) + 1
        rest = text[m.end():m.end() + 200].lstrip(" \t")
        return bool(text[line_start:start].strip(" \t+-")) or rest[:1] not in ("", "\n", "\r")
    return True


def _apply(pattern: re.Pattern[str], text: str, haystack: str) -> str:
    """``text`` with the secret of every accepted match of ``pattern`` in ``haystack`` (``text``
    or its lower-cased copy, index for index) replaced."""
    search = pattern.search
    m = search(haystack)
    if m is None:
        return text
    parts: list[str] = []
    done = 0  # text[:done] is settled and in parts
    while m is not None:
        kind = m.lastgroup or ""
        if not kind.startswith("tok") and kind not in ("atlas", "telegram", "azure"):
            secret = m.start(kind)
            keep = ((kind == "namev" and _keep_name(text, haystack, m))
                    or (kind == "shortv" and _keep_short(text, haystack, m))
                    or (kind == "urltok" and not _token_like(m.group(kind))))
            resume = secret
        else:  # a token: the whole match, or more to its left
            secret = _token_start(kind, text, m.start())
            keep = secret < done or _glued(text, secret)
            resume = m.start() + 1
        if keep:
            m = search(haystack, resume)  # what follows may itself hold a secret
            continue
        parts.append(text[done:secret])
        parts.append(REDACTED)
        done = m.end()
        m = search(haystack, done)
    parts.append(text[done:])
    return "".join(parts)


def _lower(text: str) -> str:
    """``text`` lower-cased character for character, so indexes stay valid."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)  # e.g. "İ"


def redact_text(text: str) -> str:
    """``text`` with every secret the text rules recognise replaced by ``[REDACTED]``."""
    if any(trigger in text for trigger in shellargs.TRIGGERS):
        text = shellargs.redact_args(text)
    lowered = ""
    for source, triggers, fold, shortest in _RULES:
        if len(text) < shortest:
            continue
        if fold and not lowered:
            lowered = _lower(text)
        haystack = lowered if fold else text
        if len(text) < _ALWAYS_SCAN and not any(trigger in haystack for trigger in triggers):
            continue
        redacted = _apply(_pattern(source), text, haystack)
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
