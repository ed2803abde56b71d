"""demo_events reads the hooks from the files Claude Code reads, in its order: managed settings,
its drop-ins alphabetically, then the user's own; their hook lists add up."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import demo_events


def hook(command: str) -> dict[str, object]:
    return {"hooks": [{"type": "command", "command": command}]}


def test_managed_drop_ins_then_the_users_settings(tmp_path: Path) -> None:
    managed, home = tmp_path / "etc", tmp_path / "home"
    (managed / "managed-settings.d").mkdir(parents=True)
    (home / ".claude").mkdir(parents=True)
    (managed / "managed-settings.json").write_text(json.dumps({"hooks": {"Stop": [hook("a")]}}))
    (managed / "managed-settings.d" / "50-agentmon.json").write_text(
        json.dumps({"hooks": {"Stop": [hook("c")], "SessionStart": [hook("s")]}}))
    (managed / "managed-settings.d" / "10-other.json").write_text(
        json.dumps({"hooks": {"Stop": [hook("b")]}}))
    (managed / "managed-settings.d" / ".hidden.json").write_text("not json")
    (managed / "managed-settings.d" / "notes.txt").write_text("not json")
    (home / ".claude" / "settings.json").write_text(json.dumps({"hooks": {"Stop": [hook("d")]}}))
    files = demo_events.settings_files(home, managed)
    assert [p.name for p in files] == ["managed-settings.json", "10-other.json",
                                       "50-agentmon.json", "settings.json"]
    merged = demo_events.merged_hooks([json.loads(p.read_text()) for p in files])
    stop = demo_events.registered(merged, "Stop", None)
    assert [h["command"] for h in stop] == ["a", "b", "c", "d"]
    assert [h["command"] for h in demo_events.registered(merged, "SessionStart", None)] == ["s"]


def test_no_settings_at_all(tmp_path: Path) -> None:
    assert demo_events.settings_files(tmp_path / "home", tmp_path / "etc") == []
    assert demo_events.merged_hooks([]) == {"hooks": {}}
