"""Passwords a shell command line carries as a plain argument or feeds to a command's input.

- Positional passwords: ``htpasswd -b[c] file user PW``, ``htpasswd -nbB user PW``,
  ``mosquitto_passwd -b file user PW``, ``openssl passwd -6 PW``, ``mkpasswd -m sha-512 PW``,
  ``rabbitmqctl add_user|change_password user PW``, ``ldapsearch ... -w PW``, ``ldappasswd -s PW``.
- Passwords fed to a reader of secrets on standard input: ``echo PW | sudo -S cmd``,
  ``printf '%s\\n' PW | sudo --stdin``, ``sudo -S cmd <<< PW``, ``echo PW | docker login
  --password-stdin``, ``echo user:PW | chpasswd``, ``echo PW | passwd --stdin user``.

The text is cut into shell words and operators once (a linear scan); each rule looks only at the
words of one segment (between ``|``, ``;``, ``&``, newlines) and of its neighbour.
"""

from __future__ import annotations

import itertools
import re

REDACTED = "[REDACTED]"
TRIGGERS = ("passwd", "stdin", "sudo", "rabbitmqctl", "ldap", "<<<")
_TOKEN = re.compile(r"""(?:"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|\\.|[^\s"'\\|;&<>()])+"""
                    r"|<<<|[|;&()\n]+|[<>]+")
# command: (a flag letter that must be present or "", flags taking a value, index of the
# password among the positional arguments)
_POSITIONAL: dict[str, tuple[str, frozenset[str], int]] = {
    "htpasswd": ("b", frozenset(("-C", "-r")), 2),
    "mosquitto_passwd": ("b", frozenset(("-H",)), 2),
    "mkpasswd": ("", frozenset(("-m", "-S", "-R", "-P", "--method", "--salt", "--rounds")), 0),
}
_LDAP_FLAGS = frozenset(("-w", "-s", "-a"))  # bind password, new password, old password
_OPENSSL_VALUED = frozenset(("-salt", "-in"))
_ECHOES = frozenset(("echo", "printf", "yes"))


def _base(word: str) -> str:
    return word.rsplit("/", 1)[-1].strip("'\"").lstrip("+")  # "+" starts a diff line


def _parse(args: list[tuple[int, int, str]], valued: frozenset[str],
           ) -> tuple[str, list[tuple[int, int, str]]]:
    """The flag letters and the positional arguments of a command's arguments."""
    flags, positional, skip = "", [], False
    for arg in args:
        if skip:
            skip = False
        elif arg[2].startswith("-") and len(arg[2]) > 1 and not positional:
            flags += arg[2].lstrip("-")
            skip = arg[2] in valued
        else:
            positional.append(arg)
    return flags, positional


def _positional_secret(words: list[tuple[int, int, str]]) -> list[tuple[int, int]]:
    """Spans of the password arguments in one segment's words, or []."""
    out: list[tuple[int, int]] = []
    for i, (_, _, word) in enumerate(words):
        name = _base(word)
        args = words[i + 1:]
        if name in _POSITIONAL:
            need, valued, index = _POSITIONAL[name]
            flags, positional = _parse(args, valued)
            if name == "htpasswd" and "n" in flags:
                index = 1
            if need in flags and len(positional) > index:
                out.append(positional[index][:2])
        elif name == "openssl" and args and args[0][2] == "passwd":
            out += [a[:2] for a in _parse(args[1:], _OPENSSL_VALUED)[1]]
        elif name == "rabbitmqctl" and len(args) >= 3 and args[0][2] in ("add_user",
                                                                         "change_password"):
            out.append(args[2][:2])
        elif name.startswith("ldap"):
            out += [value[:2] for flag, value in itertools.pairwise(args)
                    if flag[2] in _LDAP_FLAGS]
    return out


def _reads_secret(words: list[tuple[int, int, str]]) -> bool:
    """True when the segment's command reads a password on its standard input."""
    names = [w[2] for w in words]
    for i, word in enumerate(names):
        base = _base(word)
        if base == "sudo":
            for flag in names[i + 1:]:
                if not flag.startswith("-"):
                    break
                if flag == "--stdin" or (not flag.startswith("--") and "S" in flag):
                    return True
        elif base == "chpasswd" or word in ("--password-stdin", "--stdin", "-passin"):
            return True
    return False


def _fed(words: list[tuple[int, int, str]]) -> list[tuple[int, int]]:
    """Spans of what ``echo``/``printf``/``yes`` at the start of a segment writes, or []."""
    if not words or _base(words[0][2]) not in _ECHOES:
        return []
    args = words[1:]
    while args and args[0][2] in ("-n", "-e", "-ne", "-en", "-E"):
        args = args[1:]
    if _base(words[0][2]) == "printf" and len(args) > 1:
        args = args[1:]  # the format
    return [a[:2] for a in args]


def redact_args(text: str) -> str:
    """``text`` with the passwords of the rules above replaced by ``[REDACTED]``."""
    segments: list[list[tuple[int, int, str]]] = [[]]
    operators: list[str] = []
    here: list[tuple[int, int]] = []  # words after <<<, with the segment they belong to
    here_of: list[int] = []
    pending_here = False
    for m in _TOKEN.finditer(text):
        word = m.group()
        if word == "<<<":
            pending_here = True
        elif word[0] in "|;&()\n<>":
            pending_here = False
            if word[0] not in "<>":
                segments.append([])
                operators.append(word)
        elif pending_here:
            pending_here = False
            here.append((m.start(), m.end()))
            here_of.append(len(segments) - 1)
        else:
            segments[-1].append((m.start(), m.end(), word))
    spans: list[tuple[int, int]] = []
    reading = [_reads_secret(s) for s in segments]
    for n, segment in enumerate(segments):
        spans += _positional_secret(segment)
        if n + 1 < len(segments) and operators[n] == "|" and reading[n + 1]:
            spans += _fed(segment)
    spans += [span for span, n in zip(here, here_of, strict=True) if reading[n]]
    if not spans:
        return text
    parts: list[str] = []
    done = 0
    for start, end in sorted(set(spans)):
        if start < done:
            continue
        parts += [text[done:start], REDACTED]
        done = end
    parts.append(text[done:])
    return "".join(parts)
