#!/usr/bin/python
# Copyright: agentmon maintainers. Apache License 2.0 (galaxy.yml; see tests/sanity/ignore-*.txt).
"""Merge the agentmon hook command into Claude Code settings: a user's settings.json or a managed
settings drop-in for every user of the host."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: claude_settings
short_description: Merge the agentmon hook command into Claude Code settings
description:
  - Adds the hook command to C(~USER/.claude/settings.json) (I(scope=user)) or to a managed
    settings drop-in such as C(/etc/claude-code/managed-settings.d/50-agentmon.json)
    (I(scope=managed)), for the given events, keeping every other key, event, matcher and hook the
    file already had.
  - Claude Code applies managed settings to every user of the host, users created later included,
    and a user's C(disableAllHooks) does not turn managed hooks off. A managed file is root's, mode
    0644 (every user's Claude Code reads it), in a folder only root may write (the module refuses
    any other folder, and a link at the path); it is written as root. With I(state=absent) a
    managed file left without any setting is removed.
  - Older agentmon hook commands (another path, database or socket) are replaced; with
    I(state=absent) they are removed. Nothing else is touched.
  - In user scope all file access runs with the user's own identity, so a symlink the user
    planted cannot make root write elsewhere. The file is replaced atomically from an
    unpredictable temporary file in the same folder; its mode and group are kept (a new file is
    0600); a backup of the previous file can be kept beside it. An unchanged merge writes nothing.
  - A settings.json that is a symlink (stow, chezmoi, home-manager) is updated through the link;
    the file it points to is replaced atomically in its own folder, the link stays. That file must
    belong to the user; otherwise the module refuses and writes nothing.
  - With I(state=absent), a user without settings.json gets none, and a file without agentmon's
    hooks is not rewritten.
  - C(--diff) shows the C(hooks) section only, as settings files also hold C(env) tokens and
    C(apiKeyHelper).
options:
  scope:
    description: C(user) edits a user's settings file as that user; C(managed) edits a managed
      settings file (I(path)) as root.
    type: str
    choices: [user, managed]
    default: user
  user:
    description: Owner of the settings file; the default path is in this user's home. Required
      with I(scope=user).
    type: str
  path:
    description: Settings file to edit instead of C(~USER/.claude/settings.json). Required with
      I(scope=managed).
    type: path
  command:
    description: The hook command line Claude Code runs, for example
      C(/opt/agentmon/current/bin/agentmon hook --socket PATH).
    type: str
    required: true
  events:
    description: Events to register the command for.
    type: list
    elements: str
    required: true
  matchers:
    description: Event name to the matchers to register the command under, one entry each.
      Events not listed get an entry without matcher (events that do not take one).
    type: dict
    default: {}
  timeout:
    description: Hook timeout in seconds.
    type: int
    default: 10
  async_events:
    description: Events whose hook gets C(async true), which Claude Code runs in the background
      without waiting for it (Claude Code 2.1 and later; older releases ignore the key).
    type: list
    elements: str
    default: []
  exec_form:
    description: Write the exec form, C(command) the executable and C(args) its arguments, run
      without a shell (Claude Code 2.1.139 and later). Older releases ignore C(args) and would
      run the executable without arguments, so it is off by default.
    type: bool
    default: false
  state:
    description: Whether the agentmon hook command is present or removed.
    type: str
    choices: [present, absent]
    default: present
  backup:
    description: Keep a copy of the previous file, named with a timestamp, when the file changes.
    type: bool
    default: true
author: agentmon maintainers (@agentmon)
"""

EXAMPLES = r"""
- name: Log every tool and session event of every user of the host
  agentmon.stack.claude_settings:
    scope: managed
    path: /etc/claude-code/managed-settings.d/50-agentmon.json
    command: /opt/agentmon/current/bin/agentmon hook --socket /run/agentmon/ingest.sock
    events: [PreToolUse, Stop]
    matchers:
      PreToolUse: ["*"]
    backup: false

- name: Log every tool and session event of alice
  agentmon.stack.claude_settings:
    user: alice
    command: /opt/agentmon/current/bin/agentmon hook --socket /run/agentmon/ingest.sock
    events: [PreToolUse, Stop]
    matchers:
      PreToolUse: ["*"]
"""

RETURN = r"""
path:
  description: The settings file.
  returned: always
  type: str
backup_file:
  description: The copy of the previous file, when one was made (beside the path, also when
    the path is a link).
  returned: changed and backup
  type: str
target:
  description: The file a symlinked settings.json points to, which was read and replaced.
  returned: when path is a symlink
  type: str
"""

import contextlib
import copy
import json
import os
import pwd
import shlex
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from ansible.module_utils.basic import AnsibleModule


def is_agentmon_hook(hook: Any) -> bool:
    """A command hook running `agentmon hook` (any install path), shell or exec form."""
    if not isinstance(hook, dict) or hook.get("type") != "command":
        return False
    args = hook.get("args")
    if isinstance(args, list):
        words = [str(hook.get("command", "")), *map(str, args)]
    else:
        try:
            words = shlex.split(str(hook.get("command", "")))
        except ValueError:
            return False
    return len(words) >= 2 and os.path.basename(words[0]) == "agentmon" and words[1] == "hook"


def our_hook(command: str, timeout: int, run_async: bool, exec_form: bool) -> dict[str, Any]:
    """The hook entry agentmon wants: shell form, or exec form (no shell); async or not."""
    hook: dict[str, Any] = {"type": "command", "command": command, "timeout": timeout}
    if exec_form:
        words = shlex.split(command)
        hook.update(command=words[0], args=words[1:])
    if run_async:
        hook["async"] = True
    return hook


def _matcher(entry: Any) -> str:
    value = entry.get("matcher") if isinstance(entry, dict) else None
    return str(value or "")


def merge(settings: dict[str, Any], command: str, events: list[str],
          matchers: dict[str, list[str]], timeout: int, state: str,
          async_events: list[str] | None = None, exec_form: bool = False) -> dict[str, Any]:
    """Return the new settings object; `settings` is not modified."""
    background = set(async_events or [])
    new = copy.deepcopy(settings)
    if state == "absent" and "hooks" not in new:
        return new
    hooks = new.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise ValueError('"hooks" is not an object')
    wanted = {} if state == "absent" else {
        event: [m or "" for m in (matchers.get(event) or [None])] for event in events}
    wanted_hook = {event: our_hook(command, timeout, event in background, exec_form)
                   for event in wanted}
    for event in list(hooks):
        entries = hooks[event]
        if not isinstance(entries, list):
            continue
        keep = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("hooks"), list):
                keep.append(entry)
                continue
            before = len(entry["hooks"])
            ours = wanted_hook.get(event, {})
            entry["hooks"] = [h for h in entry["hooks"] if not is_agentmon_hook(h) or (
                h.get("command") == ours.get("command") and h.get("args") == ours.get("args")
                and _matcher(entry) in wanted.get(event, []))]
            if entry["hooks"] or before == 0:
                keep.append(entry)
        hooks[event] = keep
        # An event list is dropped only when removing agentmon's entries emptied it.
        if entries and not keep and event not in wanted:
            del hooks[event]
    for event, event_matchers in wanted.items():
        entries = hooks.setdefault(event, [])
        if not isinstance(entries, list):
            raise ValueError(f'"hooks.{event}" is not a list')
        for matcher in event_matchers:
            # Our hook lives in an entry of its own: the user's entries stay as they were.
            mine = [h for e in entries if isinstance(e, dict) and isinstance(e.get("hooks"), list)
                    and _matcher(e) == matcher for h in e["hooks"] if is_agentmon_hook(h)]
            if mine:
                for hook in mine:
                    hook["timeout"] = timeout
                    hook.pop("async", None)
                    hook.update({k: v for k, v in wanted_hook[event].items() if k == "async"})
            else:
                entry = {"matcher": matcher} if matcher else {}
                entry["hooks"] = [dict(wanted_hook[event])]
                entries.append(entry)
    return new


@contextlib.contextmanager
def as_user(account: pwd.struct_passwd) -> Iterator[None]:
    """Run file operations with the user's uid, gid and groups (effective ids only)."""
    if os.geteuid() != 0 or account.pw_uid == 0:
        yield
        return
    groups = os.getgroups()
    os.setgroups(os.getgrouplist(account.pw_name, account.pw_gid))
    os.setegid(account.pw_gid)
    os.seteuid(account.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


def write_atomically(path: str, text: str, mode: int, gid: int | None = None) -> None:
    """Replace ``path`` by a new file holding ``text``, from an unpredictable temporary file in
    the same folder (never a half-written file, never a name another user can guess)."""
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".settings.json.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if gid is not None and os.fstat(f.fileno()).st_gid != gid:
                os.fchown(f.fileno(), -1, gid)
            os.fchmod(f.fileno(), mode)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class SettingsError(Exception):
    """A settings file this module must not touch; the message says why."""


# A managed settings file: root's, readable by every user whose Claude Code applies it.
MANAGED_MODE = 0o644


def check_managed(path: str) -> None:
    """Refuse a managed settings path that is a link, or whose folder is not root's alone (root
    writes there: a folder another user may write could hold a planted link or file)."""
    folder = os.path.dirname(path)
    try:
        info = os.lstat(folder)
    except OSError as exc:
        raise SettingsError(f"cannot use {folder}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise SettingsError(f"{folder} is not a folder (a link?); refusing to write {path}")
    if info.st_uid != 0 or info.st_mode & 0o022:
        raise SettingsError(f"{folder} must be root's and writable by root only "
                            f"(uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o}); "
                            f"refusing to write {path}")
    try:
        here = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(here.st_mode):
        raise SettingsError(f"{path} is not a regular file (a link?); refusing to write it")


def backup(path: str, beside: str) -> str:
    """Copy ``path`` beside ``beside``, named like Ansible's backups (mode and times kept)."""
    dest = f"{beside}.{os.getpid()}.{time.strftime('%Y-%m-%d@%H:%M:%S')}~"
    shutil.copy2(path, dest)
    return dest


def resolve(path: str, uid: int) -> str:
    """The file to read and replace: ``path`` itself, or the file a symlink at ``path`` points
    to (stow, chezmoi, home-manager), which must exist and belong to ``uid``."""
    if not os.path.islink(path):
        return path
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except OSError as exc:
        raise SettingsError(f"{path} is a link to {target}, which cannot be used: "
                            f"{exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SettingsError(f"{path} is a link to {target}, which is not a regular file")
    if st.st_uid != uid:
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = f"uid {st.st_uid}"
        raise SettingsError(f"{path} is a link to {target}, owned by {owner}, not by the user: "
                            "refusing to write it; add the hook where that file is managed")
    return target


def hooks_only(settings: dict[str, Any] | None) -> str:
    """What --diff shows: the hooks section alone (settings also hold env tokens and
    apiKeyHelper, which must not reach a log)."""
    if settings is None:
        return ""
    return json.dumps({"hooks": settings.get("hooks", {})}, indent=2, sort_keys=True) + "\n"


def update(params: dict[str, Any], path: str, check_mode: bool,
           uid: int | None = None) -> dict[str, Any]:
    """Read, merge and (unless nothing changed or check mode) write. Raises SettingsError.

    In user scope it runs with the user's identity: it must not import anything lazily from the
    module's payload, which only root can read, hence no AnsibleModule calls in here.
    """
    result: dict[str, Any] = {"changed": False, "path": path}
    managed = params.get("scope") == "managed"
    if managed:
        check_managed(path)
        real = path
    else:
        real = resolve(path, os.geteuid() if uid is None else uid)
    if real != path:
        result["target"] = real
    try:
        with open(real, encoding="utf-8") as f:
            before_text: str | None = f.read()
        st = os.stat(real)
        mode, gid = st.st_mode & 0o7777, st.st_gid
    except FileNotFoundError:
        before_text, mode, gid = None, MANAGED_MODE if managed else 0o600, None
    except OSError as exc:
        raise SettingsError(f"cannot read {real}: {exc.strerror}") from None
    try:
        before = json.loads(before_text) if before_text and before_text.strip() else {}
    except ValueError as exc:
        raise SettingsError(f"{real} is not valid JSON ({exc}); fix it by hand first") from None
    if not isinstance(before, dict):
        raise SettingsError(f"{real} does not hold a JSON object; fix it by hand first")
    try:
        after = merge(before, params["command"], params["events"], params["matchers"],
                      params["timeout"], params["state"], params.get("async_events"),
                      bool(params.get("exec_form")))
    except ValueError as exc:
        raise SettingsError(f"{real}: {exc}; fix it by hand first") from None
    # A managed file that keeps no setting goes (state absent); one that stays is 0644 root's.
    remove = managed and before_text is not None and not {k: v for k, v in after.items()
                                                          if not (k == "hooks" and not v)}
    fix_mode = managed and before_text is not None and (mode != MANAGED_MODE or gid != 0)
    if after == before and not remove and not fix_mode and (
            before_text is not None or params["state"] == "absent"):
        return result
    result["changed"] = True
    result["diff"] = {"before": hooks_only(before if before_text is not None else None),
                      "after": hooks_only(after),
                      "before_header": f"{path} (hooks)", "after_header": f"{path} (hooks)"}
    if check_mode:
        return result
    try:
        folder = os.path.dirname(real)
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700)
        if before_text is not None and params["backup"]:
            result["backup_file"] = backup(real, path)
        if remove:
            os.unlink(real)
        else:
            write_atomically(real, json.dumps(after, indent=2) + "\n",
                             MANAGED_MODE if managed else mode, 0 if managed else gid)
    except OSError as exc:
        raise SettingsError(f"cannot write {real}: {exc.strerror or exc}") from None
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "scope": {"type": "str", "default": "user", "choices": ["user", "managed"]},
            "user": {"type": "str"},
            "path": {"type": "path"},
            "command": {"type": "str", "required": True},
            "events": {"type": "list", "elements": "str", "required": True},
            "matchers": {"type": "dict", "default": {}},
            "timeout": {"type": "int", "default": 10},
            "async_events": {"type": "list", "elements": "str", "default": []},
            "exec_form": {"type": "bool", "default": False},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "backup": {"type": "bool", "default": True},
        },
        required_if=[("scope", "user", ["user"]), ("scope", "managed", ["path"])],
        supports_check_mode=True,
    )
    p = module.params
    for event, matchers in p["matchers"].items():
        if not isinstance(matchers, list) or not all(isinstance(m, str) for m in matchers):
            module.fail_json(msg=f"matchers.{event} must be a list of strings")
    if p["scope"] == "managed":
        path = p["path"]
        try:
            result = update(p, path, module.check_mode)
        except SettingsError as exc:
            module.fail_json(msg=str(exc), path=path)
    else:
        try:
            account = pwd.getpwnam(p["user"])
        except KeyError:
            module.fail_json(msg=f"user {p['user']} does not exist")
        path = p["path"] or os.path.join(account.pw_dir, ".claude", "settings.json")
        try:
            with as_user(account):
                result = update(p, path, module.check_mode, account.pw_uid)
        except SettingsError as exc:
            module.fail_json(msg=str(exc), path=path)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
