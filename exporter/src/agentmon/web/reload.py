"""Re-read the web config when asked (SIGHUP) or when a file it names changes.

The files are the config itself and the certificate, key, client CA and bearer token it names;
a change is a different device, inode, size, mtime or ctime (so a rename over the file, a
rotated symlink target or an edit in place all count). A new config that does not load or
would not be accepted at startup leaves the running one in use, with one log line; the
next change (or SIGHUP) tries again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from agentmon.web.config import WebConfig, WebConfigError, load_web_config

log = logging.getLogger("agentmon.web")

Fingerprint = tuple[tuple[str, object], ...]


def watched_files(config: WebConfig) -> list[Path]:
    files = [config.path] if config.path is not None else []
    if config.tls is not None:
        files += [config.tls.cert_file, config.tls.key_file]
        if config.tls.client_ca_file is not None:
            files.append(config.tls.client_ca_file)
    if config.bearer_token_file is not None:
        files.append(config.bearer_token_file)
    return files


def fingerprint(files: list[Path]) -> Fingerprint:
    out: list[tuple[str, object]] = []
    for path in files:
        try:
            st = os.stat(path)
        except OSError as exc:
            out.append((str(path), type(exc).__name__))
        else:
            out.append((str(path), (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                    st.st_ctime_ns)))
    return tuple(out)


class WebConfigWatcher:
    """Calls ``apply(new_config)`` when the web config or a file it names changes.

    ``apply`` and ``accept`` may raise ValueError (WebConfigError is one) to refuse it."""

    def __init__(self, config: WebConfig, apply: Callable[[WebConfig], None],
                 accept: Callable[[WebConfig], None] | None = None) -> None:
        self.config = config
        self._apply = apply
        self._accept = accept
        self._files = watched_files(config)
        self._seen = fingerprint(self._files)
        self.reloads = 0

    def poll(self, force: bool = False) -> bool:
        """Reload if something changed (or ``force``); True when a new config is in use."""
        if self.config.path is None:
            if force:
                log.info("no --web.config.file to reload")
            return False
        seen = fingerprint(self._files)  # before reading: a change while loading is seen next
        if seen == self._seen and not force:
            return False
        self._seen = seen
        try:
            new = load_web_config(self.config.path)
            if self._accept is not None:
                self._accept(new)
            self._apply(new)
        except (WebConfigError, ValueError) as exc:
            log.error("web config not reloaded, the previous one stays in use: %s", exc)
            return False
        files = watched_files(new)
        if files != self._files:
            self._files, self._seen = files, fingerprint(files)
        self.config = new
        self.reloads += 1
        log.info("web config reloaded (%s)", new.summary())
        return True
