"""Graceful stop on Ctrl-C (SIGINT) and SIGTERM: finish the current step, flush, exit resumable.

The first signal only sets a flag that the training loop reads after every step; the run then
flushes the steps taken so far with a matching checkpoint and stops. A second signal raises
``KeyboardInterrupt`` at once (for a flush that hangs on a dead network store): what was flushed
before stays valid, only the unflushed block is lost. SIGTERM is handled the same way because
batch schedulers (SLURM, PBS) send it before killing a job.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

#: Exit code of a command stopped by a signal: 128 + the signal number (130 for SIGINT).
INTERRUPTED_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopRequest:
    """A flag set by a signal (or by the driver of a worker process) and polled by training.

    Calling the object answers "should training stop now?". ``also`` adds other flags to poll,
    e.g. a ``multiprocessing.Event`` set by the parent of a pool worker.
    """

    def __init__(self, also: Callable[[], bool] | None = None):
        self._event = threading.Event()
        self._also = also
        self.signum: int | None = None

    def set(self, signum: int | None = None) -> None:
        if self.signum is None:
            self.signum = signum
        self._event.set()

    def __call__(self) -> bool:
        if not self._event.is_set() and self._also is not None and self._also():
            self._event.set()
        return self._event.is_set()

    @property
    def exit_code(self) -> int:
        return INTERRUPTED_EXIT.get(self.signum, 130)  # type: ignore[arg-type]


@contextlib.contextmanager
def graceful_stop(
    stop: StopRequest | None = None, on_first: Callable[[int], None] | None = None
) -> Iterator[StopRequest]:
    """Install SIGINT/SIGTERM handlers that set ``stop`` (a second signal raises at once).

    Handlers can only be installed from the main thread; elsewhere the request is returned
    without handlers and only its other sources (``also``) can set it.
    """
    stop = stop or StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.signum is not None:  # the second signal: stop now, without the flush
            raise KeyboardInterrupt
        stop.set(signum)
        if on_first is not None:
            on_first(signum)

    previous = {s: signal.signal(s, handler) for s in INTERRUPTED_EXIT}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
