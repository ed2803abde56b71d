"""Loaded for every scenario's Testinfra tests (the shared Molecule config passes
--confcutdir=molecule): puts molecule/_shared, the helpers they share, on the path."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "_shared"))
