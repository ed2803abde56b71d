"""The top-level members of an event too large to hold, read as a stream in bounded memory.

An event over ``--max-input-bytes`` (an Edit of a big file: Claude Code's response carries the
whole ``originalFile``) must still record its finish, or its row stays running. This scanner
walks the JSON text chunk by chunk and keeps, for each member of the top-level object, at most
``keep`` bytes of its value: a value that fits is decoded as it is; a longer string is cut, with
a ``[TRUNCATED ...]`` marker; a longer object or array is dropped for a marker object. Memory is
bounded by the first chunk plus ``keep`` bytes per member, whatever the size of the input. It
is not a validator: the members it returns are validated as any event is.
"""

from __future__ import annotations

import json
import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

CHUNK = 64 * 1024
KEY_LIMIT = 256  # longer keys are kept by nobody: their values are skipped
# The rest of a string's body (up to its closing quote, or a backslash ending the chunk), and
# everything in a nested value up to its next bracket (whole strings included): one regex call
# each, so a value's size costs C-speed matching, not a Python step per byte or per escape.
_STRING_BODY = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)
_NESTED_SKIP = re.compile(rb'(?:[^"{}\[\]\\]+|"[^"\\]*(?:\\.[^"\\]*)*")*', re.DOTALL)
_SPACE = b" \t\r\n"


class Malformed(ValueError):
    """The text is not one JSON object (as far as the scanner can tell)."""


class _Value:
    __slots__ = ("kind", "over", "raw", "size")

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "string", "nested" or "scalar"
        self.raw = bytearray()
        self.size = 0
        self.over = False

    def add(self, data: bytes, keep: int) -> None:
        self.size += len(data)
        if not self.over:
            room = keep - len(self.raw)
            if len(data) > room:
                self.raw += data[:max(room, 0)]
                self.over = True
            else:
                self.raw += data


class Scanner:
    """Feed chunks with ``feed``, then ``finish`` for the members."""

    def __init__(self, keep: int, marker: str) -> None:
        self.keep = keep
        self.marker = marker  # what a cut or dropped value says, e.g. the event's size
        self.members: dict[str, Any] = {}
        self.state = "start"
        self.key = bytearray()
        self.value = _Value("none")  # the member value being read
        self.depth = 0  # nesting inside a nested value
        self.in_string = False  # inside a string within a nested value
        self.escaped = False  # the previous byte was a backslash inside a string
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        pos, end = 0, len(chunk)
        while pos < end:
            pos = self._step(chunk, pos, end)

    def _step(self, chunk: bytes, pos: int, end: int) -> int:
        state = self.state
        if state in ("key_string", "value_string") or (state == "nested" and self.in_string):
            return self._in_string(chunk, pos, end)
        if state == "nested":
            return self._nested(chunk, pos, end)
        byte = chunk[pos]
        if state == "scalar":
            if byte in b",}" or byte in _SPACE:
                self._end_value()
                return pos  # the separator is read in state "after"
            stop = pos + 1
            while stop < end and chunk[stop] not in b",} \t\r\n":
                stop += 1
            self.value.add(chunk[pos:stop], self.keep)
            return stop
        if byte in _SPACE:
            return pos + 1
        if state == "start":
            if chunk[pos:pos + 3] == b"\xef\xbb\xbf":
                return pos + 3
            if byte != ord("{"):
                raise Malformed("not a JSON object")
            self.state = "key"
            return pos + 1
        if state == "key":
            if byte == ord("}") and not self.members and not self.key:
                self.state = "done"
                return pos + 1
            if byte != ord('"'):
                raise Malformed("expected a member name")
            self.key = bytearray()
            self.state = "key_string"
            return pos + 1
        if state == "colon":
            if byte != ord(":"):
                raise Malformed("expected ':'")
            self.state = "value"
            return pos + 1
        if state == "value":
            if byte == ord('"'):
                self.value = _Value("string")
                self.state = "value_string"
            elif byte in b"{[":
                self.value = _Value("nested")
                self.depth = 1
                self.state = "nested"
            else:
                self.value = _Value("scalar")
                self.state = "scalar"
                return pos  # the scalar's first byte is read in state "scalar"
            self.value.add(chunk[pos:pos + 1], self.keep)
            return pos + 1
        if state == "after":
            if byte == ord(","):
                self.state = "key"
                self.key = bytearray()
                return pos + 1
            if byte == ord("}"):
                self.state = "done"
                return pos + 1
            raise Malformed("expected ',' or '}'")
        # "done": only whitespace may follow
        raise Malformed("text after the end of the object")

    def _in_string(self, chunk: bytes, pos: int, end: int) -> int:
        start = pos
        if self.escaped:  # the previous chunk ended with a backslash: this byte is escaped
            self.escaped = False
            pos += 1
        body = _STRING_BODY.match(chunk, pos, end)
        pos = body.end() if body else pos
        if pos < end and chunk[pos] == ord('"'):
            pos += 1
            self._take(chunk[start:pos])
            self._string_closed()
            return pos
        if pos < end:  # a backslash, the chunk's last byte
            self.escaped = True
            pos = end
        self._take(chunk[start:pos])
        return pos

    def _take(self, data: bytes) -> None:
        if self.state == "key_string":
            if len(self.key) <= KEY_LIMIT:
                self.key += data[:KEY_LIMIT + 1]
        else:
            self.value.add(data, self.keep)

    def _string_closed(self) -> None:
        if self.state == "key_string":
            self.state = "colon"
        elif self.state == "value_string":
            self._end_value()
        else:
            self.in_string = False

    def _nested(self, chunk: bytes, pos: int, end: int) -> int:
        skipped = _NESTED_SKIP.match(chunk, pos, end)
        stop = skipped.end() if skipped else pos
        if stop == end:
            self.value.add(chunk[pos:end], self.keep)
            return end
        byte = chunk[stop]
        self.value.add(chunk[pos:stop + 1], self.keep)
        if byte == ord('"'):
            self.in_string = True
        elif byte == ord("\\"):
            raise Malformed("backslash outside a string")
        elif byte in b"{[":
            self.depth += 1
        else:
            self.depth -= 1
            if self.depth == 0:
                self._end_value()
        return stop + 1

    def _end_value(self) -> None:
        value = self.value
        self.state = "after"
        if len(self.key) > KEY_LIMIT:
            return
        try:
            name = json.loads(b'"' + bytes(self.key[:-1]) + b'"')
        except ValueError:
            raise Malformed("a member name is not valid JSON") from None
        self.members[name] = self._decode(value)

    def _decode(self, value: _Value) -> Any:
        if not value.over:
            try:
                return json.loads(bytes(value.raw))
            except ValueError:
                raise Malformed("a value is not valid JSON") from None
        note = f"[TRUNCATED: {value.size} bytes, {self.marker}]"
        if value.kind == "string":
            return _string_prefix(bytes(value.raw[1:])) + " " + note
        return {"truncated": note}

    def finish(self) -> dict[str, Any]:
        if self.state != "done":
            raise Malformed("the text ends inside the object")
        return self.members


def _string_prefix(raw: bytes) -> str:
    """Decode the start of a JSON string cut anywhere: drop a cut escape or character."""
    for cut in range(min(len(raw), 8) + 1):
        try:
            text = str(json.loads(b'"' + raw[:len(raw) - cut] + b'"'))
        except ValueError:
            continue
        if text and "\ud800" <= text[-1] <= "\udbff":
            text = text[:-1]  # half of a surrogate pair that was cut
        return text
    return ""


def scan(first: bytes, rest: IO[bytes], *, keep: int, read_limit: int,
         marker: str) -> tuple[dict[str, Any], int]:
    """Members of the JSON object whose first bytes are ``first`` and the rest in ``rest``.

    Reads at most ``read_limit`` bytes in all; returns (members, bytes read). Raises Malformed,
    or OverflowError when the input goes on past ``read_limit``.
    """
    scanner = Scanner(keep, marker)
    scanner.feed(first)
    while True:
        chunk = rest.read(CHUNK)
        if not chunk:
            break
        if scanner.total + len(chunk) > read_limit:
            raise OverflowError(f"larger than {read_limit} bytes")
        scanner.feed(chunk)
    return scanner.finish(), scanner.total
