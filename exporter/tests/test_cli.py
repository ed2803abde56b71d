"""The `agentmon` dispatcher: help, version, unknown commands, and a real process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agentmon import __version__, cli


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert f"  {name} " in out


def test_no_arguments_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: agentmon" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"agentmon {__version__}"


def test_version_json_names_the_schema_version(capsys: pytest.CaptureFixture[str]) -> None:
    from agentmon.schema.migrations import LATEST

    assert cli.main(["--version", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"version": __version__, "schema_version": LATEST}


def test_unknown_command_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "agentmon: error: unknown command 'frobnicate'"


def test_dispatches_to_the_subcommand_module(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["migrate", "--help"])
    assert exc.value.code == 0
    assert "agentmon migrate" in capsys.readouterr().out


def test_real_process_uses_argv() -> None:
    proc = subprocess.run([sys.executable, "-m", "agentmon.cli", "--version"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"agentmon {__version__}"
