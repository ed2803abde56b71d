#!/usr/bin/env python3
"""Build a test release of agentmon for the rollback scenario (never shipped).

    build_release.py --release 2 OUT        # version <base>.post2, one more schema step
    build_release.py --release 3 OUT        # <base>.post3: release 2 plus a failing health check

Copies exporter/ to a temporary folder, patches the copy and runs tools/build_wheelhouse.sh
on it with OUT as the wheelhouse (which keeps what is already there). The patches:
- version: pyproject.toml and agentmon.__version__ become <base>.post<N>;
- schema step (2 and 3): a step after the latest, up creates an index and down drops it,
  registered the way the package registers its steps; the hook's schema constant follows;
- failing health (3): the collector demands a schema version no database has, so
  agentmon_db_up stays 0 (reason not_migrated) and the deploy's health check fails.
Each patch finds its anchor exactly once or stops with one line naming it (the package layout
changed: update this recipe). Prints the version built.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEP = '''

# --- rollback scenario test release: one more schema step (molecule/rollback) ---
def _rollback_probe_up(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE INDEX IF NOT EXISTS idx_rollback_probe ON agent_invocations(model)")


def _rollback_probe_down(conn: sqlite3.Connection) -> None:
    conn.execute("DROP INDEX IF EXISTS idx_rollback_probe")


STEPS = (*STEPS, Step(STEPS[-1].version + 1, "rollback_probe", _rollback_probe_up,
                      _rollback_probe_down))
LATEST = STEPS[-1].version
'''


class RecipeError(RuntimeError):
    pass


def one_file(package: Path, pattern: str) -> tuple[Path, re.Match[str]]:
    hits = [(p, m) for p in sorted(package.rglob("*.py"))
            for m in [re.search(pattern, p.read_text(), re.M)] if m]
    if len(hits) != 1:
        raise RecipeError(f"expected one file matching {pattern!r} in {package}, found "
                          f"{[str(p.relative_to(package)) for p, _ in hits]}")
    return hits[0]


def substitute(path: Path, pattern: str, replace: str) -> None:
    text, count = re.subn(pattern, replace, path.read_text(), count=0, flags=re.M)
    if count != 1:
        raise RecipeError(f"{path}: expected one match of {pattern!r}, found {count}")
    path.write_text(text)


def patch(src: Path, release: int) -> str:
    package = src / "src" / "agentmon"
    init = package / "__init__.py"
    base = re.search(r'^__version__ = "([^"]+)"$', init.read_text(), re.M)
    if base is None:
        raise RecipeError(f"{init}: no __version__")
    version = f"{base.group(1)}.post{release}"
    substitute(init, r'^__version__ = "[^"]+"$', f'__version__ = "{version}"')
    substitute(src / "pyproject.toml", r'^version = "[^"]+"$', f'version = "{version}"')
    migrations, _ = one_file(package, r"^LATEST = STEPS\[-1\]\.version$")
    with migrations.open("a") as f:
        f.write(STEP)
    hook, match = one_file(package, r"^SCHEMA_VERSION = (\d+)$")
    substitute(hook, r"^SCHEMA_VERSION = \d+$", f"SCHEMA_VERSION = {int(match.group(1)) + 1}")
    if release == 3:
        collector, _ = one_file(package, r"^MIN_SCHEMA = .+$")
        substitute(collector, r"^MIN_SCHEMA = .+$", "MIN_SCHEMA = 99")
    return version


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=int, choices=[2, 3], required=True)
    parser.add_argument("out", type=Path, help="wheelhouse folder (kept and added to)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="agentmon-release-") as tmp:
        src = Path(tmp) / "exporter"
        shutil.copytree(ROOT / "exporter", src, ignore=shutil.ignore_patterns(
            "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "tests", "bench"))
        try:
            version = patch(src, args.release)
        except RecipeError as exc:
            print(f"build_release.py: {exc}", file=sys.stderr)
            return 1
        # Our own script, with paths we made: no untrusted input.
        build = [str(ROOT / "tools" / "build_wheelhouse.sh"), str(args.out.resolve())]
        subprocess.run(build, check=True, env={**os.environ, "SOURCE": str(src)},  # noqa: S603
                       stdout=subprocess.DEVNULL)
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
