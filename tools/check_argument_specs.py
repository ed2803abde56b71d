#!/usr/bin/env python3
"""Check that every role's defaults/main.yml and meta/argument_specs.yml agree.

For each role under the given folder (default: roles/):
- every variable in defaults/main.yml is an option of the `main` entry point, with the same
  default value, and a value of the declared type;
- every option that is not required has a default in defaults/main.yml; a required option
  (a secret) has none, nor has a secret that only some setups need (no_log, not required);
- every variable is prefixed with the role's variable prefix (its name, or for the roles that
  moved into the collection under a shorter name, the name they had: VARIABLE_PREFIX), and
  every block of variables in defaults/main.yml (blocks are separated by blank lines) carries a
  comment.
Prints one line per problem and exits 1 if there is any.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "path": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "raw": (object,),
}


def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def _type_ok(value: Any, kind: str) -> bool:
    allowed = TYPES.get(kind, (object,))
    if kind in ("int", "float") and isinstance(value, bool):
        return False
    # A templated string ("{{ ... }}") may stand for any type.
    if isinstance(value, str) and "{{" in value:
        return True
    return isinstance(value, allowed)


def _uncommented_blocks(path: Path) -> list[str]:
    """Top-level keys of blocks (separated by blank lines) that carry no comment."""
    missing: list[str] = []
    block_keys: list[str] = []
    commented = False
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        stripped = line.strip()
        if not stripped:
            if block_keys and not commented:
                missing.append(block_keys[0])
            block_keys, commented = [], False
        elif stripped.startswith("#"):
            commented = True
        elif not line[0].isspace() and ":" in line and stripped != "---":
            block_keys.append(line.split(":", 1)[0])
    return missing


# The roles kept their variable names when they moved into the collection agentmon.stack (users'
# inventories keep working; the agentmon_ prefix keeps them apart from prometheus.prometheus').
VARIABLE_PREFIX = {"exporter": "agentmon_exporter", "db": "agentmon_db", "hooks": "agentmon_hooks",
                   "pki": "agentmon_pki", "_release": "agentmon_release"}


def check_role(role: Path) -> list[str]:
    defaults_file = role / "defaults" / "main.yml"
    specs_file = role / "meta" / "argument_specs.yml"
    name = VARIABLE_PREFIX.get(role.name, role.name)
    if not specs_file.exists():
        return [f"{role}: meta/argument_specs.yml is missing"]
    defaults = (_load(defaults_file) or {}) if defaults_file.exists() else {}
    try:
        options = _load(specs_file)["argument_specs"]["main"].get("options") or {}
    except (KeyError, TypeError):
        return [f"{specs_file}: no argument_specs.main entry point"]
    problems: list[str] = []
    for var, value in defaults.items():
        where = f"{defaults_file}: {var}"
        if not var.startswith(f"{name}_"):
            problems.append(f"{where}: not prefixed with {name}_")
        spec = options.get(var)
        if spec is None:
            problems.append(f"{where}: not documented in meta/argument_specs.yml")
            continue
        if spec.get("required"):
            problems.append(f"{where}: required in argument_specs but has a default")
        if "default" not in spec:
            problems.append(f"{where}: argument_specs has no default (defaults has {value!r})")
        elif spec["default"] != value:
            problems.append(f"{where}: default {value!r} != argument_specs default "
                            f"{spec['default']!r}")
        kind = spec.get("type", "str")
        if not _type_ok(value, kind):
            problems.append(f"{where}: {value!r} is not of type {kind}")
        if not spec.get("description"):
            problems.append(f"{specs_file}: {var}: no description")
    for var, spec in options.items():
        if var in defaults:
            continue
        where = f"{specs_file}: {var}"
        # A secret needed only in some setups (no_log, not required) has no default either.
        if not spec.get("required") and not spec.get("no_log"):
            problems.append(f"{where}: optional but missing from defaults/main.yml")
        elif "default" in spec:
            problems.append(f"{where}: required options take no default")
        if not spec.get("description"):
            problems.append(f"{where}: no description")
    if defaults_file.exists():
        problems += [f"{defaults_file}: {key}: its block has no comment"
                     for key in _uncommented_blocks(defaults_file)]
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path("roles")
    roles = sorted(p for p in root.iterdir() if (p / "tasks").is_dir()) if root.is_dir() else []
    if not roles:
        print(f"check_argument_specs: no roles under {root}", file=sys.stderr)
        return 1
    problems = [problem for role in roles for problem in check_role(role)]
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"check_argument_specs: {len(roles)} roles, defaults and argument_specs agree")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
