"""The ``agentmon`` command: a thin dispatcher to one module per subcommand.

Each subcommand's entry module is ``agentmon.<package>.cli`` (``hook``, ``ingest``, ``schema``
for migrate, ``prune``, ``serve``, ``seed``), with its own argument parser and ``main(argv)``,
imported only when it is the one asked for: ``agentmon hook`` runs once per Claude Code event,
so it must not pay for importing the exporter (prometheus_client, bcrypt, yaml) or even
argparse's full help machinery.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from agentmon import __version__

# subcommand -> (module, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "hook": ("agentmon.hook.cli", "log one Claude Code hook event (JSON on stdin) to SQLite"),
    "ingest": ("agentmon.ingest.cli", "store the hooks' events as the database's one writer,"
               " behind a local socket"),
    "migrate": ("agentmon.schema.cli", "bring the database schema to a version, with backups"),
    "prune": ("agentmon.prune.cli", "remove finished rows older than a retention, keeping"
              " their numbers"),
    "serve": ("agentmon.serve.cli", "serve Prometheus metrics kept incrementally from the"
              " database"),
    "seed": ("agentmon.seed.cli", "write realistic synthetic history, for demos and benchmarks"),
}

USAGE = "usage: agentmon [-h] [--version [--json]] {" + ",".join(COMMANDS) + "} ..."


def _help() -> str:
    lines = [USAGE, "", "Monitoring for AI-agent workflow logs.", "", "commands:"]
    lines += [f"  {name:<9} {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Run 'agentmon COMMAND --help' for the options of one command.",
              "'agentmon --version --json' prints the version and the schema version it needs."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_help())
        return 0 if args else 2
    if args[0] == "--version":
        if args[1:] == ["--json"]:
            # For deploy tooling: the release's version and the schema version it needs.
            import json

            from agentmon.schema.migrations import LATEST

            print(json.dumps({"version": __version__, "schema_version": LATEST}))
        else:
            print(f"agentmon {__version__}")
        return 0
    entry = COMMANDS.get(args[0])
    if entry is None:
        print(f"{USAGE}\nagentmon: error: unknown command {args[0]!r}", file=sys.stderr)
        return 2
    command: Callable[[list[str]], int] = import_module(entry[0]).main
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main())
