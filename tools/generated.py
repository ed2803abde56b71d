"""One way for tools that write a generated part of a checked-in file: write it, or --check it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def write_or_check(tool: str, args: argparse.Namespace, render: Callable[[str, str], str],
                   differs: str) -> int:
    """Render ``args.file`` anew; with ``args.check`` report a difference (exit 1) instead of
    writing it. ``differs`` names what differs; errors are one line."""
    try:
        text = args.file.read_text(encoding="utf-8")
        wanted = render(text, str(args.file))
    except (OSError, ValueError) as exc:
        print(f"{tool}: error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        if wanted != text:
            print(f"{tool}: {args.file}: {differs}; run tools/{tool}.py {args.file}",
                  file=sys.stderr)
            return 1
        return 0
    if wanted != text:
        args.file.write_text(wanted, encoding="utf-8")
        print(f"wrote {args.file}")
    return 0


def parser(description: str, check_help: str) -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(description=description)
    out.add_argument("--check", action="store_true", help=check_help)
    return out
