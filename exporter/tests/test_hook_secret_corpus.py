"""No secret of the corpus reaches disk; text that only looks like one is stored unchanged.

Each case goes through the real ``agentmon hook`` entry point into a real SQLite file, carried
the way Claude Code sends it: a Bash command and its stdout, a Write and an Edit (with the
response's ``structuredPatch`` lines), a failed tool's error, a subagent's prompt and answer, and
an MCP tool's arguments. Then every byte of the database file and its ``-wal`` is searched for
any 8-character piece of the secret, raw or JSON-escaped.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hook_events import event, run_hook
from secret_corpus import ADVERSARIAL, HARMLESS, SECRETS

from agentmon.hook import redact
from agentmon.schema.migrate import migrate

AGENTMON = Path(sys.executable).with_name("agentmon")
WINDOW = 8


def carried(text: str, n: int) -> list[dict[str, Any]]:
    """The events of one agent turn that each carry ``text`` somewhere in a payload."""
    lines = text.splitlines()
    patch = [{"oldStart": 1, "oldLines": 1, "newStart": 1, "newLines": len(lines),
              "lines": ["-# placeholder"] + [f"+{line}" for line in lines]}]
    bash_in = {"command": text, "description": "Run the command"}
    write_in = {"file_path": f"/home/dev/project/.env.{n}", "content": text}
    edit_in = {"file_path": f"/home/dev/project/config/{n}.yml", "old_string": "# placeholder",
               "new_string": text, "replace_all": False}
    task_in = {"description": "Configure deploy", "prompt": f"Use this:\n{text}",
               "subagent_type": "general-purpose"}
    try:
        mcp_in: Any = json.loads(text)
    except ValueError:
        mcp_in = {"query": text}
    if not isinstance(mcp_in, dict):
        mcp_in = {"query": text}

    def use(name: str, tool: str, uid: str, tool_input: dict[str, Any],
            **fields: Any) -> dict[str, Any]:
        return event(name, tool_name=tool, tool_use_id=f"toolu_{n}_{uid}", tool_input=tool_input,
                     **fields)

    return [
        use("PreToolUse", "Bash", "bash", bash_in),
        use("PostToolUse", "Bash", "bash", bash_in,
            tool_response={"stdout": text, "stderr": "", "interrupted": False,
                           "isImage": False}),
        use("PreToolUse", "Write", "write", write_in),
        use("PostToolUse", "Write", "write", write_in,
            tool_response={"type": "create", "filePath": write_in["file_path"],
                           "content": text, "structuredPatch": patch}),
        use("PreToolUse", "Edit", "edit", edit_in),
        use("PostToolUse", "Edit", "edit", edit_in,
            tool_response={"filePath": edit_in["file_path"], "oldString": "# placeholder",
                           "newString": text, "originalFile": f"# placeholder\n{text}\n",
                           "structuredPatch": patch, "userModified": False}),
        use("PreToolUse", "Bash", "fail", {"command": "./deploy.sh"}),
        use("PostToolUseFailure", "Bash", "fail", {"command": "./deploy.sh"},
            error=f"Command failed with exit code 1\n{text}", is_interrupt=False),
        use("PreToolUse", "Task", "task", task_in),
        use("PostToolUse", "Task", "task", task_in,
            tool_response={"content": [{"type": "text", "text": f"Done. I used:\n{text}"}],
                           "totalDurationMs": 1200, "totalTokens": 900}),
        use("PreToolUse", "mcp__vault__put", "mcp", mcp_in),
        use("PostToolUse", "mcp__vault__put", "mcp", mcp_in, tool_response={"echo": mcp_in}),
    ]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("template") / "agent_workflow.db"
    migrate(db)
    return db


def record(template: Path, folder: Path, events: list[dict[str, Any]]) -> bytes:
    """Send ``events`` to the hook; every byte the database left on disk, WAL included."""
    db = folder / "agent_workflow.db"
    shutil.copyfile(template, db)
    keeper = sqlite3.connect(db)  # an open connection keeps the -wal file and all its frames
    try:
        keeper.execute("SELECT count(*) FROM sqlite_master").fetchone()
        for item in events:
            code, err = run_hook(item, db)
            assert (code, err) == (0, ""), err
        files = sorted(folder.glob("agent_workflow.db*"))
        assert Path(f"{db}-wal") in files
        return b"".join(path.read_bytes() for path in files)
    finally:
        keeper.close()


def surviving(blob: bytes, secret: str) -> list[str]:
    """Pieces of ``secret`` (WINDOW characters, raw or JSON-escaped) found in ``blob``."""
    found = []
    for piece in secret.split():
        for form in {piece, json.dumps(piece)[1:-1]}:
            width = min(WINDOW, len(form))
            step = 1 if len(form) <= 96 else 4  # long keys: any surviving run of 11+ shows
            for start in range(0, len(form) - width + 1, step):
                if form[start:start + width].encode() in blob:
                    found.append(form[start:start + width])
                    break
    return found


def test_the_corpus_is_large_and_varied() -> None:
    assert len(SECRETS) >= 150
    assert len({case_id for case_id, _, _ in SECRETS}) == len(SECRETS)
    assert len(HARMLESS) >= 25


@pytest.mark.parametrize(("case_id", "text", "secrets"), SECRETS, ids=[c[0] for c in SECRETS])
def test_no_piece_of_a_secret_reaches_disk(template: Path, tmp_path: Path, case_id: str,
                                           text: str, secrets: list[str]) -> None:
    blob = record(template, tmp_path, carried(text, 1))
    assert b"[REDACTED]" in blob
    for secret in secrets:
        assert surviving(blob, secret) == [], f"{case_id}: {secret[:60]!r}"


def stored(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        values = [v for row in conn.execute(
            "SELECT tool_input, tool_output, error FROM agent_tool_uses")
            for v in row if v is not None]
        values += [v for row in conn.execute(
            "SELECT prompt, raw_input, raw_output, result_summary FROM agent_invocations")
            for v in row if v is not None]
        return values
    finally:
        conn.close()


@pytest.mark.parametrize(("case_id", "text"), HARMLESS, ids=[c[0] for c in HARMLESS])
def test_look_alikes_are_stored_unchanged(template: Path, tmp_path: Path, case_id: str,
                                          text: str) -> None:
    events = carried(text, 1)
    record(template, tmp_path, events)
    values = stored(tmp_path / "agent_workflow.db")
    assert not [v for v in values if redact.REDACTED in v], case_id
    escaped = json.dumps(text)[1:-1]
    assert any(escaped in v for v in values)  # the JSON payloads
    assert any(text in v for v in values)  # the error text


def test_token_counts_in_payload_keys_are_kept(template: Path, tmp_path: Path) -> None:
    response = {"content": [{"type": "text", "text": "ok"}], "totalTokens": 9000,
                "totalDurationMs": 500, "usage": {"input_tokens": 10, "max_tokens": 4096,
                                                  "cache_read_input_tokens": 7}}
    task_in = {"description": "d", "prompt": "p", "subagent_type": "x"}
    record(template, tmp_path, [
        event("PreToolUse", tool_name="Task", tool_use_id="toolu_t", tool_input=task_in),
        event("PostToolUse", tool_name="Task", tool_use_id="toolu_t", tool_input=task_in,
              tool_response=response)])
    conn = sqlite3.connect(tmp_path / "agent_workflow.db")
    try:
        (raw,) = conn.execute("SELECT raw_output FROM agent_invocations").fetchone()
    finally:
        conn.close()
    assert json.loads(raw) == response


def test_the_console_script_redacts_too(template: Path, tmp_path: Path) -> None:
    """A sample of the corpus through `agentmon hook` processes, as Claude Code runs it."""
    db = tmp_path / "agent_workflow.db"
    shutil.copyfile(template, db)
    env = {**os.environ, "AGENTMON_DB": str(db)}
    env.pop("COVERAGE_PROCESS_START", None)
    sample = SECRETS[:: max(1, len(SECRETS) // 12)]
    keeper = sqlite3.connect(db)
    try:
        keeper.execute("SELECT 1").fetchone()
        for n, (_, text, _) in enumerate(sample):
            for item in carried(text, n)[:2]:
                proc = subprocess.run([str(AGENTMON), "hook"], input=json.dumps(item).encode(),
                                      capture_output=True, env=env, timeout=60, check=False)
                assert (proc.returncode, proc.stderr) == (0, b"")
        blob = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("agent_workflow.db*")))
    finally:
        keeper.close()
    for case_id, _, secrets in sample:
        for secret in secrets:
            assert surviving(blob, secret) == [], case_id


LIMIT = 300_000


@pytest.mark.parametrize("text", [t[:LIMIT] for t in ADVERSARIAL], ids=range(len(ADVERSARIAL)))
def test_adversarial_text_is_redacted_and_ends(text: str) -> None:
    """Each pathological input is redacted to a result; how long it takes (linear in the
    input's length) is measured by bench/bench_redact.py. A quadratic scan would take hours:
    the join below is only a failure guard, not a measurement."""
    done: list[str] = []
    worker = threading.Thread(target=lambda: done.append(redact.redact_text(text)), daemon=True)
    worker.start()
    worker.join(600)
    assert done, "redaction did not end within 10 minutes"
