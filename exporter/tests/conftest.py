"""Fixtures shared by the package's tests (helpers that are plain functions live in
collector_db.py, hook_events.py, webtls.py, which tests import by name). Every test's hook run
spools into a folder of the test session, never the user's own."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from collector_db import make_db

os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="agentmon-test-state-")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where a test's database goes; not created."""
    return tmp_path / "agent_workflow.db"


@pytest.fixture
def db(db_path: Path) -> Path:
    """An empty database at the latest schema."""
    return make_db(db_path)
