"""Per-run leases: at most one live process trains a run, and a dead holder never blocks it.

Two kinds, chosen by where the store lives:

- :class:`FlockLease` (local stores): an ``flock`` on ``_state/locks/<run>.lock``. The kernel
  releases it the instant its holder dies, however it dies (SIGKILL included), so mutual
  exclusion is strict and a killed worker's run can be taken over at once. (On NFS, ``flock``
  is emulated with byte-range locks; it works on Linux NFSv4 mounts.)
- :class:`TimedLease` (fsspec stores: ``s3://``, ``gs://``, ``memory://``): an object
  ``_state/leases/<run>.json`` holding the holder's id and an expiry time, renewed by a heartbeat
  thread while the run trains and taken over by anyone once it has expired. Object stores without
  conditional writes cannot give strict mutual exclusion: two processes that find the lease free
  at the same moment both write it; each then reads it back and only the one whose write landed
  last keeps it, which narrows the window to the store's read-after-write latency but does not
  close it. The cost of losing that race is duplicated compute, not wrong data: training is
  deterministic, so both write the same numbers into the same chunks. Expiry compares wall clocks,
  so hosts sharing a store need clocks synchronised to well within the lease time.

A holder may be paused past its lease (a suspended process, a long GC or network stall) while
another process takes the run over. Its heartbeat notices at its next beat, but the training
thread may reach a write first; so every write of a run's training path is preceded by
:meth:`Lease.confirm`, which reads the lease object there and then. That narrows the window in
which a holder that lost its lease can still write to the few writes of one flush (a pause that
falls between the check and those writes); without conditional writes it cannot be closed.

This module does not import torch.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from runner.storage import StoreLocation

#: Seconds a timed lease lives without renewal; its heartbeat renews it every third of this.
DEFAULT_LEASE_TTL = 60.0


def holder_id() -> str:
    """Who holds a lease: host, process id and a random tag (pids are reused across hosts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Holder:
    """Another process's claim on a run.

    ``expires`` is the Unix time at which a timed lease runs out unless renewed; None for an
    ``flock``, which is held exactly as long as its holder lives.
    """

    holder: str
    expires: float | None


class Lease(ABC):
    """A claim on one run of one store."""

    #: Set when a timed lease is found taken over by another holder while held.
    lost: threading.Event

    @abstractmethod
    def acquire(self) -> Holder | None:
        """Try to take the lease without waiting; None when taken, else who holds it."""

    @abstractmethod
    def release(self) -> None:
        """Give the lease back (a no-op when it is not held)."""

    @abstractmethod
    def confirm(self) -> bool:
        """Whether this process holds the lease now; ask it right before writing the run."""

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class FlockLease(Lease):
    """An ``flock`` on a local lock file; released by the kernel when its holder dies."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lost = threading.Event()  # never set: an flock cannot be taken over
        self._fd: int | None = None

    def acquire(self) -> Holder | None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            return Holder(holder, None)
        os.ftruncate(fd, 0)
        # the holder's pid, for people (and tests) that want to know who trains the run
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def confirm(self) -> bool:
        """True while acquired: nobody can take an flock from a live holder."""
        return self._fd is not None


class TimedLease(Lease):
    """A lease object with a holder and an expiry, renewed by a heartbeat thread (see module)."""

    def __init__(
        self,
        location: StoreLocation,
        parts: tuple[str, ...],
        ttl: float = DEFAULT_LEASE_TTL,
        holder: str | None = None,
    ):
        if ttl <= 0:
            raise ValueError(f"lease ttl must be positive seconds, got {ttl}")
        self.location = location
        self.parts = parts
        self.ttl = ttl
        self.holder = holder or holder_id()
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def current(self) -> Holder | None:
        """The lease as stored (None when absent or unreadable, which counts as free)."""
        data = self.location.read_bytes(*self.parts)
        if data is None:
            return None
        try:
            record = json.loads(data)
            return Holder(str(record["holder"]), float(record["expires"]))
        except (ValueError, KeyError, TypeError):
            return None  # a torn or foreign file: treat as expired rather than block forever

    def _write(self) -> None:
        record = {"holder": self.holder, "expires": time.time() + self.ttl, "ttl_s": self.ttl}
        self.location.write_bytes(json.dumps(record).encode(), *self.parts)

    def _take(self) -> Holder | None:
        """Write the lease as ours and read it back: None when it is ours, else who has it.

        Of two processes that wrote at once, the later write wins (module note)."""
        self._write()
        current = self.current()
        if current is None or current.holder != self.holder:
            return current or Holder("unknown", time.time() + self.ttl)
        return None

    def acquire(self) -> Holder | None:
        current = self.current()
        if current and current.holder != self.holder and current.expires > time.time():
            return current
        taken = self._take()
        if taken is not None:
            return taken
        self._stop.clear()
        self.lost.clear()
        self._heartbeat = threading.Thread(
            target=self._renew, name=f"lease-{self.parts[-1]}", daemon=True
        )
        self._heartbeat.start()
        return None

    def confirm(self) -> bool:
        """Whether the lease is still ours, read from the store now; sets :attr:`lost` if not.

        Ours means acquired, not released, and the stored lease names us. A lease that names us
        but has expired by our clock (we were paused past it and nobody took it over) may be
        being taken by another process at this very moment, so it is taken again exactly as
        :meth:`acquire` takes a free one: written and read back, and ours only if our write
        landed last. A lease that is absent was taken over and given back meanwhile: lost too.
        A failed read raises ``OSError`` (we cannot tell; the caller must not write then).
        """
        if self._heartbeat is None:
            return False  # not acquired, or released
        if self.lost.is_set():
            return False  # once lost, never ours again: a new acquire() is a new claim
        current = self.current()
        mine = current is not None and current.holder == self.holder
        if mine and current.expires <= time.time():
            mine = self._take() is None
        if not mine:
            self.lost.set()
        return mine

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with contextlib.suppress(OSError):  # a missed renewal is retried; expiry is far off
                if not self.confirm():
                    return  # taken over (we were presumed dead); stop renewing
                self._write()

    def release(self) -> None:
        if self._heartbeat is None:
            return
        self._stop.set()
        self._heartbeat.join()
        self._heartbeat = None
        current = self.current()
        if current is not None and current.holder == self.holder:
            self.location.remove(*self.parts)
