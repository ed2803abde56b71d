"""The collector's checkpoint file: JSON, written atomically, mode 0600.

A new version goes to an unpredictable temporary name in the same folder (``tempfile.mkstemp``:
no symlink games), is flushed to disk, then renamed over the old one, so a crash leaves either
the old or the new checkpoint, never a torn one. A digest of the content is stored with it: a
damaged or hand-edited checkpoint is not trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

# 2: removals, witnesses and head (see collector.reading); 3: usage, prune batches; 4: the
# removal token
FORMAT = 4
# Format 3 is read too: its state has no removal token, and reads as one that has not seen it
# yet (the first refresh compares the removal counter alone, as the exporter that wrote it
# did, then takes the token), so an upgrade does not cost a rebuild.
READ_FORMATS = (3, FORMAT)


class CheckpointError(Exception):
    """The checkpoint could not be read or written (one-line message)."""


def save(path: Path, payload: dict[str, object]) -> None:
    content = {"format": FORMAT, **payload}
    try:
        data = json.dumps({**content, "digest": _digest(content)}, separators=(",", ":")).encode()
    except ValueError as exc:  # a non-finite number: it could not be read back
        raise CheckpointError(f"cannot write checkpoint {path}: {exc}") from None
    folder = path.absolute().parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint in {folder}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CheckpointError(f"cannot write checkpoint {path}: {exc.strerror}") from None
    with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load(path: Path) -> dict[str, object] | None:
    """The saved payload, None when there is no checkpoint; CheckpointError when unusable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"checkpoint {path} is not valid JSON") from None
    except RecursionError:
        raise CheckpointError(f"checkpoint {path} is nested too deeply") from None
    if not isinstance(data, dict) or data.get("format") not in READ_FORMATS:
        raise CheckpointError(f"checkpoint {path} has an unknown format")
    digest = data.pop("digest", None)
    if digest != _digest(data):  # a damaged or edited file would be trusted state otherwise
        raise CheckpointError(f"checkpoint {path} does not match its digest")
    state = data.get("state")
    if data["format"] == 3 and isinstance(state, dict):
        state.setdefault("removal_token", None)
    return data


def _digest(content: dict[str, object]) -> str:
    text = json.dumps(content, separators=(",", ":"), allow_nan=False).encode()
    return hashlib.blake2b(text, digest_size=16).hexdigest()


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: we never write it
        raise ValueError(f"number out of range: {text[:20]}")
    return value


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not JSON")
