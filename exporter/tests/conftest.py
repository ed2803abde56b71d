"""Fixtures shared by the package's tests (helpers that are plain functions live in
collector_db.py, hook_events.py, webtls.py, which tests import by name)."""

from __future__ import annotations

from pathlib import Path

import pytest
from collector_db import make_db


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where a test's database goes; not created."""
    return tmp_path / "agent_workflow.db"


@pytest.fixture
def db(db_path: Path) -> Path:
    """An empty database at the latest schema."""
    return make_db(db_path)
