"""Every test's hook runs spool into a folder of the test session, never the user's own."""

from __future__ import annotations

import os
import tempfile

os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="agentmon-test-state-")
