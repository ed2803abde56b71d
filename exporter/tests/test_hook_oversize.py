"""Events over --max-input-bytes: the finish is recorded, in bounded memory, through the real
process; the streaming scanner agrees with json on what it keeps."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hook_events import event, rows
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmon.hook import oversize

AGENTMON = Path(sys.executable).with_name("agentmon")

# Runs one `agentmon hook` with stdin from a file and prints the child's peak RSS (KiB).
PEAK = """
import resource, subprocess, sys
with open(sys.argv[1], "rb") as stdin:
    proc = subprocess.run(sys.argv[2:], stdin=stdin, capture_output=True, check=False)
sys.stderr.write(proc.stderr.decode())
print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def package_lock(size: int) -> str:
    """A package-lock.json of about ``size`` bytes."""
    entries: list[str] = []
    n = total = 0
    while total < size:
        name = f"node_modules/pkg-{n}"
        entries.append(json.dumps(name) + ": " + json.dumps({
            "version": f"1.{n % 40}.{n % 7}", "resolved": f"https://registry.npmjs.org/pkg-{n}",
            "integrity": "sha512-" + "A" * 86 + "==", "dev": n % 3 == 0}, indent=6))
        total += len(entries[-1])
        n += 1
    return '{\n  "name": "app",\n  "lockfileVersion": 3,\n  "packages": {\n    ' + \
        ",\n    ".join(entries) + "\n  }\n}\n"


def edit(name: str, original: str, session: str = "big") -> dict[str, Any]:
    tool_input = {"file_path": "/home/dev/app/package-lock.json",
                  "old_string": '"lockfileVersion": 3', "new_string": '"lockfileVersion": 3 '}
    fields: dict[str, Any] = {"tool_name": "Edit", "tool_use_id": "toolu_edit",
                              "tool_input": tool_input}
    if name == "PostToolUse":
        fields["tool_response"] = {"filePath": tool_input["file_path"], "originalFile": original,
                                   "structuredPatch": [], "userModified": False}
    return event(name, session, **fields)


def run_process(db: Path, tmp_path: Path, payload: bytes) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in KiB) of one real `agentmon hook` process."""
    data = tmp_path / "event.json"
    data.write_bytes(payload)
    env = {**os.environ, "AGENTMON_DB": str(db)}
    env.pop("COVERAGE_PROCESS_START", None)
    proc = subprocess.run([sys.executable, "-c", PEAK, str(data), str(AGENTMON), "hook"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    code, peak = proc.stdout.split()
    return int(code), proc.stderr, int(peak)


def test_the_finish_of_an_oversized_edit_is_recorded_in_bounded_memory(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    small = json.dumps(edit("PreToolUse", "")).encode()
    assert run_process(db, tmp_path, small)[:2] == (0, "")
    lock = package_lock(int(1.25 * 1024 * 1024))
    post = json.dumps(edit("PostToolUse", lock)).encode()
    assert len(post) > 1024 * 1024
    code, err, _ = run_process(db, tmp_path, post)
    assert (code, err) == (0, "")
    (row,) = rows(db, "SELECT status, tool_output, end_time FROM agent_tool_uses")
    assert row[0] == "completed"
    assert row[2] is not None
    output = json.loads(row[1])
    # the payload is cut with a visible marker; nothing of the 1.25 MB is held on disk
    assert "TRUNCATED" in row[1]
    assert len(row[1]) <= 16 * 1024
    assert output
    # memory: bounded, whatever the size (the 1 MiB prefix, its copies, a chunk, kept values)
    _, _, base = run_process(db, tmp_path, json.dumps(edit("PreToolUse", "", "s")).encode())
    peaks = {}
    for mib in (4, 40):
        huge = json.dumps(edit("PostToolUse", package_lock(mib * 1024 * 1024), f"h{mib}"))
        code, err, peaks[mib] = run_process(db, tmp_path, huge.encode())
        assert (code, err) == (0, "")
    print(f"\npeak RSS (MiB): small event {base / 1024:.1f}, 4 MiB event {peaks[4] / 1024:.1f},"
          f" 40 MiB event {peaks[40] / 1024:.1f}")
    assert peaks[40] - peaks[4] < 1024, peaks  # KiB: it does not grow with the event
    assert peaks[40] - base < 10 * 1024, (base, peaks)
    assert rows(db, "SELECT status FROM agent_tool_uses WHERE session_id LIKE 'h%'") == [
        ("completed",), ("completed",)]


def test_ids_after_a_huge_value_are_found(tmp_path: Path) -> None:
    # Claude Code may put tool_use_id after tool_response: the scanner reads to the end
    item = edit("PostToolUse", "x" * 2_000_000)
    tail = {"tool_use_id": item.pop("tool_use_id"), "error": "e" * 70_000}
    members, size = oversize.scan(b"", io.BytesIO(json.dumps({**item, **tail}).encode()),
                                  keep=1000, read_limit=10**8, marker="cut")
    assert members["tool_use_id"] == "toolu_edit"
    size_of = len(json.dumps(item["tool_response"]))
    assert members["tool_response"] == {"truncated": f"[TRUNCATED: {size_of} bytes, cut]"}
    assert members["error"] == "e" * 999 + " [TRUNCATED: 70002 bytes, cut]"
    assert members["tool_input"] == item["tool_input"]
    assert size > 2_000_000


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=6), st.integers(1, 17),
       st.booleans(), st.booleans())
def test_the_scanner_agrees_with_json_in_any_chunking(members: dict[str, Any], chunk: int,
                                                      indent: bool, ascii_only: bool) -> None:
    text = json.dumps(members, indent=2 if indent else None, ensure_ascii=ascii_only).encode()
    scanner = oversize.Scanner(keep=10_000, marker="m")
    for at in range(0, len(text), chunk):
        scanner.feed(text[at:at + chunk])
    assert scanner.finish() == json.loads(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=60),
       st.integers(1, 40), st.integers(1, 7))
def test_a_cut_string_is_a_decoded_prefix(value: str, keep: int, chunk: int) -> None:
    text = json.dumps({"k": value}).encode()
    scanner = oversize.Scanner(keep=keep, marker="m")
    for at in range(0, len(text), chunk):
        scanner.feed(text[at:at + chunk])
    got = scanner.finish()["k"]
    if len(json.dumps(value)) <= keep:
        assert got == value
    else:
        kept, _, note = got.rpartition(" [TRUNCATED: ")
        assert value.startswith(kept)
        assert note == f"{len(json.dumps(value))} bytes, m]"


@pytest.mark.parametrize(("text", "reason"), [
    (b"[1, 2]", "not a JSON object"),
    (b'{"a" 1}', "expected ':'"),
    (b'{"a": 1 "b": 2}', "expected ',' or '}'"),
    (b'{"a": 1,}', "expected a member name"),
    (b'{"a": 1} x', "text after the end"),
    (b'{"a": tru}', "a value is not valid JSON"),
    (b'{"a": [1, \\ 2]}', "backslash outside a string"),
    (b'{"a\\x": 1}', "a member name is not valid JSON"),
    (b'{"a": "unterminated', "the text ends inside the object"),
])
def test_malformed_text_is_refused(text: bytes, reason: str) -> None:
    with pytest.raises(oversize.Malformed, match=reason):
        oversize.scan(text, io.BytesIO(b""), keep=100, read_limit=1000, marker="m")


def test_edge_shapes() -> None:
    scanner = oversize.Scanner(keep=4, marker="m")
    scanner.feed(b'\xef\xbb\xbf {} ')
    assert scanner.finish() == {}
    scanner = oversize.Scanner(keep=4, marker="m")
    scanner.feed(b'{"' + b"k" * 300 + b'": 1, "n": 123456, "o": {"a": 1}}')
    # a name too long to be one we use is skipped; long numbers and objects are dropped
    assert scanner.finish() == {"n": {"truncated": "[TRUNCATED: 6 bytes, m]"},
                                "o": {"truncated": "[TRUNCATED: 8 bytes, m]"}}
    assert oversize._string_prefix(b"\\ud83d\\ude0") == ""
    assert oversize._string_prefix(b"ok\\ud83d\\ude00") == "ok\U0001f600"
    assert oversize._string_prefix(b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7") == ""
    with pytest.raises(OverflowError):
        oversize.scan(b"{", io.BytesIO(b" " * 200_000), keep=4, read_limit=100_000, marker="m")
