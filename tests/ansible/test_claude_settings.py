"""The hooks role's module agentmon.stack.claude_settings (plugins/modules) on real files, with a
real uid switch to an unprivileged account (nobody) where the module's safety depends on it (run
as root, as CI is)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import pwd
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

MODULE_PATH = Path(__file__).resolve().parents[2] / "plugins" / "modules" / "claude_settings.py"
_spec = importlib.util.spec_from_file_location("agentmon_claude_settings", MODULE_PATH)
assert _spec is not None
assert _spec.loader is not None
mod = importlib.util.module_from_spec(_spec)
sys.modules["agentmon_claude_settings"] = mod
_spec.loader.exec_module(mod)

COMMAND = "/opt/agentmon/current/bin/agentmon hook --db /var/lib/agentmon/agent_workflow.db"
EVENTS = ["PreToolUse", "Stop"]
MATCHERS = {"PreToolUse": ["*"]}
USER_HOOK = {"matcher": "Bash", "hooks": [{"type": "command", "command": "/usr/local/bin/audit"}]}
SECRETS = {"env": {"ANTHROPIC_API_KEY": "sk-secret-token"}, "apiKeyHelper": "/bin/secret-helper"}

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="switching uid needs root (CI is root)")


def params(state: str = "present", **over: Any) -> dict[str, Any]:
    return {"command": COMMAND, "events": EVENTS, "matchers": MATCHERS, "timeout": 30,
            "state": state, "backup": True, **over}


def write_json(path: Path, doc: Any, mode: int = 0o640) -> None:
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    path.chmod(mode)


def ours(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(event, entry.get("matcher", "")) for event, entries in doc.get("hooks", {}).items()
            for entry in entries for h in entry.get("hooks", [])
            if mod.is_agentmon_hook(h)]


@pytest.fixture
def nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


@pytest.fixture
def home(nobody: pwd.struct_passwd) -> Iterator[Path]:
    """A home folder owned by nobody, reachable by nobody (pytest's tmp_path is root-only)."""
    top = Path(tempfile.mkdtemp(prefix="agentmon-settings-", dir="/tmp"))
    top.chmod(0o755)
    home = top / "home"
    home.mkdir(mode=0o755)
    (home / ".claude").mkdir(mode=0o700)
    if os.geteuid() == 0:
        for p in (home, home / ".claude"):
            os.chown(p, nobody.pw_uid, nobody.pw_gid)
    yield home
    shutil.rmtree(top)


def run_as(account: pwd.struct_passwd, p: dict[str, Any], path: Path,
           check_mode: bool = False) -> dict[str, Any]:
    with mod.as_user(account):
        return mod.update(p, str(path), check_mode, account.pw_uid)


# --- merge -----------------------------------------------------------------------------------


def test_present_adds_one_entry_per_event_and_matcher_and_keeps_the_users() -> None:
    before = {"model": "sonnet", "hooks": {"PreToolUse": [USER_HOOK]}}
    after = mod.merge(before, COMMAND, EVENTS, MATCHERS, 30, "present")
    assert after["hooks"]["PreToolUse"][0] == USER_HOOK
    assert ours(after) == [("PreToolUse", "*"), ("Stop", "")]
    assert before == {"model": "sonnet", "hooks": {"PreToolUse": [USER_HOOK]}}
    assert mod.merge(after, COMMAND, EVENTS, MATCHERS, 30, "present") == after


def test_present_replaces_an_older_agentmon_command_and_updates_the_timeout() -> None:
    old = mod.merge({}, "/srv/old/bin/agentmon hook --db /x.db", EVENTS, MATCHERS, 10, "present")
    new = mod.merge(old, COMMAND, EVENTS, MATCHERS, 30, "present")
    commands = [h["command"] for entries in new["hooks"].values() for e in entries
                for h in e["hooks"]]
    assert commands == [COMMAND, COMMAND]
    retimed = mod.merge(new, COMMAND, EVENTS, MATCHERS, 45, "present")
    assert {h["timeout"] for es in retimed["hooks"].values() for e in es for h in e["hooks"]} \
        == {45}


def test_absent_removes_only_agentmon_hooks() -> None:
    doc = mod.merge({"hooks": {"PreToolUse": [USER_HOOK]}}, COMMAND, EVENTS, MATCHERS, 30,
                    "present")
    assert mod.merge(doc, COMMAND, EVENTS, MATCHERS, 30, "absent") == \
        {"hooks": {"PreToolUse": [USER_HOOK]}}


def test_absent_leaves_settings_without_hooks_and_empty_event_lists_alone() -> None:
    assert mod.merge({"model": "opus"}, COMMAND, EVENTS, MATCHERS, 30, "absent") == \
        {"model": "opus"}
    doc = {"hooks": {"Stop": [], "PreToolUse": [USER_HOOK, "odd"]}}
    assert mod.merge(doc, COMMAND, EVENTS, MATCHERS, 30, "absent") == doc


def test_malformed_hooks_are_reported() -> None:
    with pytest.raises(ValueError, match='"hooks" is not an object'):
        mod.merge({"hooks": []}, COMMAND, EVENTS, MATCHERS, 30, "present")
    with pytest.raises(ValueError, match=r'"hooks\.Stop" is not a list'):
        mod.merge({"hooks": {"Stop": {}}}, COMMAND, EVENTS, MATCHERS, 30, "present")


def test_is_agentmon_hook() -> None:
    assert mod.is_agentmon_hook({"type": "command", "command": COMMAND})
    assert not mod.is_agentmon_hook({"type": "command", "command": "agentmon serve"})
    assert not mod.is_agentmon_hook({"type": "command", "command": "'unbalanced"})
    assert not mod.is_agentmon_hook({"type": "prompt", "command": COMMAND})
    assert not mod.is_agentmon_hook("agentmon hook")


# --- files -----------------------------------------------------------------------------------


def test_absent_creates_no_settings_file(home: Path) -> None:
    path = home / ".claude" / "settings.json"
    result = mod.update(params("absent"), str(path), False)
    assert result["changed"] is False
    assert not path.exists()


def test_absent_does_not_rewrite_a_file_without_agentmon_hooks(home: Path) -> None:
    path = home / ".claude" / "settings.json"
    path.write_text('{"model":"opus"}', encoding="utf-8")  # not how json.dumps would write it
    inode, mtime = path.stat().st_ino, path.stat().st_mtime_ns
    assert mod.update(params("absent"), str(path), False)["changed"] is False
    assert path.read_text(encoding="utf-8") == '{"model":"opus"}'
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime)


def test_present_creates_a_private_file_then_changes_nothing(home: Path) -> None:
    path = home / ".claude" / "settings.json"
    assert mod.update(params(), str(path), False)["changed"] is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ours(json.loads(path.read_text(encoding="utf-8"))) == [("PreToolUse", "*"), ("Stop", "")]
    assert mod.update(params(), str(path), False)["changed"] is False


def test_present_creates_the_claude_folder(home: Path) -> None:
    shutil.rmtree(home / ".claude")
    path = home / ".claude" / "settings.json"
    assert mod.update(params(), str(path), False)["changed"] is True
    assert stat.S_IMODE((home / ".claude").stat().st_mode) == 0o700


def test_keeps_mode_makes_a_backup_and_leaves_no_temporary_file(home: Path) -> None:
    path = home / ".claude" / "settings.json"
    write_json(path, {"hooks": {"PreToolUse": [USER_HOOK]}}, 0o640)
    result = mod.update(params(), str(path), False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    backup = Path(result["backup_file"])
    assert json.loads(backup.read_text(encoding="utf-8")) == {"hooks": {"PreToolUse": [USER_HOOK]}}
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert "backup_file" not in mod.update(params(backup=False, timeout=31), str(path), False)


def test_check_mode_writes_nothing(home: Path) -> None:
    path = home / ".claude" / "settings.json"
    write_json(path, {"model": "opus"})
    text = path.read_text(encoding="utf-8")
    assert mod.update(params(), str(path), True)["changed"] is True
    assert path.read_text(encoding="utf-8") == text
    assert mod.update(params(), str(home / ".claude" / "new.json"), True)["changed"] is True
    assert not (home / ".claude" / "new.json").exists()


def test_diff_shows_the_hooks_section_only(home: Path) -> None:
    path = home / ".claude" / "settings.json"
    write_json(path, {**SECRETS, "hooks": {"PreToolUse": [USER_HOOK]}})
    diff = mod.update(params(), str(path), True)["diff"]
    assert set(json.loads(diff["before"])) == {"hooks"}
    assert json.loads(diff["before"])["hooks"] == {"PreToolUse": [USER_HOOK]}
    assert ours(json.loads(diff["after"])) == [("PreToolUse", "*"), ("Stop", "")]
    for text in (diff["before"], diff["after"]):
        assert "sk-secret-token" not in text
        assert "secret-helper" not in text
    new = mod.update(params(), str(home / ".claude" / "new.json"), True)["diff"]
    assert new["before"] == ""


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "does not hold a JSON object"),
    ('{"hooks": []}', '"hooks" is not an object'),
])
def test_bad_files_are_refused_and_kept(home: Path, content: str, message: str) -> None:
    path = home / ".claude" / "settings.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(mod.SettingsError, match=message):
        mod.update(params(), str(path), False)
    assert path.read_text(encoding="utf-8") == content


def test_an_empty_file_counts_as_no_settings(home: Path) -> None:
    path = home / ".claude" / "settings.json"
    path.write_text("\n", encoding="utf-8")
    assert mod.update(params(), str(path), False)["changed"] is True
    assert ours(json.loads(path.read_text(encoding="utf-8")))


# --- links and other users (real uid switch) -------------------------------------------------


@root_only
def test_a_symlinked_settings_file_is_updated_through_the_link(
        home: Path, nobody: pwd.struct_passwd) -> None:
    dotfiles = home / "dotfiles" / "claude"
    dotfiles.mkdir(parents=True)
    target = dotfiles / "settings.json"
    write_json(target, {**SECRETS, "hooks": {"PreToolUse": [USER_HOOK]}}, 0o640)
    for p in (home / "dotfiles", dotfiles, target):
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    link = home / ".claude" / "settings.json"
    link.symlink_to("../dotfiles/claude/settings.json")

    result = run_as(nobody, params(), link)

    assert result["changed"] is True
    assert result["target"] == str(target)
    assert link.is_symlink()
    assert os.readlink(link) == "../dotfiles/claude/settings.json"
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert doc["env"] == SECRETS["env"]
    assert ours(doc) == [("PreToolUse", "*"), ("Stop", "")]
    st = target.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == \
        (0o640, nobody.pw_uid, nobody.pw_gid)
    assert Path(result["backup_file"]).parent == link.parent
    assert not [p for p in dotfiles.iterdir() if p.name != "settings.json"]
    assert run_as(nobody, params(), link)["changed"] is False


@root_only
def test_a_link_to_a_file_of_another_user_is_refused(
        home: Path, nobody: pwd.struct_passwd) -> None:
    target = home / "managed-by-root.json"
    write_json(target, {"model": "opus"}, 0o644)  # root's, readable by all
    link = home / ".claude" / "settings.json"
    link.symlink_to(target)
    before = target.read_text(encoding="utf-8")
    with pytest.raises(mod.SettingsError, match="owned by root, not by the user: refusing"):
        run_as(nobody, params(), link)
    assert target.read_text(encoding="utf-8") == before
    assert (target.stat().st_uid, link.is_symlink()) == (0, True)


@root_only
def test_dangling_links_and_links_to_folders_are_refused(
        home: Path, nobody: pwd.struct_passwd) -> None:
    link = home / ".claude" / "settings.json"
    link.symlink_to(home / "missing.json")
    with pytest.raises(mod.SettingsError, match="cannot be used"):
        run_as(nobody, params(), link)
    link.unlink()
    link.symlink_to(home)
    with pytest.raises(mod.SettingsError, match="not a regular file"):
        run_as(nobody, params(), link)


@root_only
def test_files_the_user_cannot_read_are_reported_not_overwritten(
        home: Path, nobody: pwd.struct_passwd) -> None:
    path = home / ".claude" / "settings.json"
    write_json(path, {"model": "opus"}, 0o600)
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    os.chown(home / ".claude", 0, 0)  # a folder the user cannot enter
    with pytest.raises(mod.SettingsError, match="cannot read"):
        run_as(nobody, params(), path)


@root_only
def test_as_user_switches_and_restores_identity(nobody: pwd.struct_passwd) -> None:
    with mod.as_user(nobody):
        assert (os.geteuid(), os.getegid()) == (nobody.pw_uid, nobody.pw_gid)
    assert (os.geteuid(), os.getegid()) == (0, 0)


# --- the Ansible module ----------------------------------------------------------------------


def run_module(args: dict[str, Any], diff: bool = False) -> dict[str, Any]:
    from ansible.module_utils import basic
    from ansible.module_utils.common.text.converters import to_bytes

    payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_diff": diff,
                                       "_ansible_remote_tmp": "/tmp",
                                       "_ansible_keep_remote_files": False}}
    basic._ANSIBLE_ARGS = to_bytes(json.dumps(payload))
    basic._ANSIBLE_PROFILE = "legacy"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        mod.main()
    return json.loads(out.getvalue())


def test_module_reports_diff_only_when_asked(home: Path) -> None:
    me = pwd.getpwuid(os.geteuid()).pw_name
    path = home / ".claude" / "settings.json"
    args = {"user": me, "path": str(path), "command": COMMAND, "events": EVENTS,
            "matchers": MATCHERS}
    first = run_module(args)
    assert first["changed"] is True
    assert "diff" not in first
    second = run_module({**args, "timeout": 20}, diff=True)
    assert second["changed"] is True
    assert "hooks" in second["diff"]["after"]


def test_module_refuses_unknown_users_and_bad_matchers(home: Path) -> None:
    args = {"user": "no-such-user-agentmon", "command": COMMAND, "events": EVENTS}
    assert "does not exist" in run_module(args)["msg"]
    me = pwd.getpwuid(os.geteuid()).pw_name
    bad = run_module({**args, "user": me, "matchers": {"PreToolUse": "*"}})
    assert "matchers.PreToolUse must be a list of strings" in bad["msg"]
    path = home / ".claude" / "settings.json"
    path.write_text("[]", encoding="utf-8")
    failed = run_module({**args, "user": me, "path": str(path)})
    assert failed["failed"] is True
    assert "does not hold a JSON object" in failed["msg"]
