#!/usr/bin/env python3
"""Check every relative link in the repository's Markdown files: the file and the anchor exist.

    tools/check_links.py [PATH ...]    Markdown files, or folders to search (default: the repo)

Inline links and images (``[text](target)``, ``![alt](target)``) outside code are checked:
a relative target must name an existing file or folder (relative to the page), and a
``#anchor`` (on its own: the same page) must be a heading of the Markdown page it points at,
slugged as GitHub does (lower case, punctuation dropped, spaces as ``-``, repeats ``-1``,
``-2``...), or an ``<a id>``/``<a name>`` there. Links with a scheme (``https:``,
``mailto:``) are not fetched. Prints one line per broken link and exits 1 if there is any.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {"build", "node_modules", "__pycache__"}
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+).+?\1")
FENCE = re.compile(r"^\s{0,3}(```|~~~)")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:[^>]*\s)?(?:id|name)=\"([^\"]+)\"")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def slug(title: str) -> str:
    """GitHub's anchor for a heading's text (before de-duplication)."""
    text = re.sub(r"`|\*\*|__|\[([^\]]*)\]\([^)]*\)", r"\1", title).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _lines_outside_code(text: str) -> list[tuple[int, str]]:
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown page defines."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _lines_outside_code(path.read_text(encoding="utf-8")):
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every inline link outside code on a page."""
    out = []
    for number, line in _lines_outside_code(path.read_text(encoding="utf-8")):
        for match in LINK.finditer(CODE_SPAN.sub("", line)):
            out.append((number, match.group(1).strip("<>")))
    return out


def check(path: Path, cache: dict[Path, set[str]]) -> list[str]:
    problems = []
    for number, target in links(path):
        if SCHEME.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path.resolve()
        where = f"{path}:{number}: {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file {dest}")
        elif anchor and dest.suffix == ".md":
            if dest not in cache:
                cache[dest] = anchors(dest)
            if anchor not in cache[dest]:
                problems.append(f"{where}: {dest.name} has no heading or anchor #{anchor}")
    return problems


def pages(paths: list[Path]) -> list[Path]:
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.md")
                            if not any(part.startswith(".") or part in SKIP_DIRS
                                       or part.endswith(".egg-info")
                                       for part in p.relative_to(path).parts[:-1]))
        else:
            found.append(path)
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    files = pages([Path(a) for a in args] or [ROOT])
    cache: dict[Path, set[str]] = {}
    problems: list[str] = []
    for page in files:
        try:
            problems += check(page, cache)
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{page}: cannot read it ({exc})")
    for problem in problems:
        print(problem, file=sys.stderr)
    total = sum(len(links(p)) for p in files if p.exists())
    print(f"check_links: {len(files)} pages, {total} links, {len(problems)} broken")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
