"""Where the runner's log goes: the ``runner`` logger (every module logs to a child of it,
``logging.getLogger(__name__)``) and ``cds-run --log-file``.

Each process that trains configures its own file handler from :attr:`runner.worker.Job.log_file`
(pool and Dask workers included), appending whole lines to the same file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

#: Line format of the log file: time, level, process (host:pid is in the messages), logger.
LOG_FORMAT = "%(asctime)s %(levelname)-7s pid=%(process)d %(name)s: %(message)s"

_configured: set[tuple[int, str]] = set()


def configure_log_file(path: str | os.PathLike | None, level: int | str = logging.INFO) -> None:
    """Append the ``runner`` logger's records at ``level`` and above to ``path`` (None: no log
    file). Idempotent per process and path, so workers may call it for every run."""
    if path is None:
        return
    resolved = str(Path(path).expanduser().resolve())
    key = (os.getpid(), resolved)
    if key in _configured:
        return
    handler = logging.FileHandler(resolved, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger("runner")
    logger.addHandler(handler)
    logger.setLevel(level)
    _configured.add(key)
