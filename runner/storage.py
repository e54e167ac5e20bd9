"""Where a run store lives: a local directory or an fsspec URL, and the byte-level file operations
the runner needs beside Zarr (checkpoints, leases, store creation).

Local paths and ``file://`` URLs are both served by the local filesystem directly: that keeps the
guarantees only a kernel gives (atomic ``rename``, ``flock`` released when its holder dies).
Every other protocol (``memory://`` in tests; ``s3://`` with ``s3fs``, ``gs://`` with ``gcsfs``;
``local://``, a local directory reached through fsspec, which tests use for a store that several
processes share through timed leases) goes through fsspec, where a single object write is atomic
but there is no rename and no lock. fsspec's own local filesystem writes a file in place, so a
writer frozen or killed mid-write would leave a part of a chunk that readers fail to decode;
``local://`` therefore gets :class:`ObjectLikeLocalFileSystem`, whose writes are whole as an
object store's ``PUT`` is.
This module does not import torch.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

#: Packages that provide the filesystems users ask for most; named in the error when missing.
_PROTOCOL_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs"}


class ObjectLikeLocalFileSystem(LocalFileSystem):
    """fsspec's local filesystem with whole-file writes: a reader sees a file's old contents or
    its new ones, never a part, as on the object stores ``local://`` stands in for.

    Each write goes to a temporary file beside the target, then ``os.replace``. It makes parent
    directories on write, since every file the runner writes lives in one.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(**{"auto_mkdir": True, **kwargs})

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        if mode == "create" and self.exists(path):
            raise FileExistsError(path)
        self.makedirs(self._parent(path), exist_ok=True)
        _replace_whole(path, value)


def _temporary_name(path: str) -> str:
    """A name beside ``path`` that no other process or write picks."""
    return f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _replace_whole(path: str, data: bytes) -> None:
    """Write a local file through a temporary one beside it and ``os.replace``: a reader sees
    the old contents or the new ones, never a part (the temporary file is removed on failure)."""
    tmp = _temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class LocationError(ValueError):
    """A store location that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class StoreLocation:
    """A parsed store location.

    Attributes
    ----------
    text
        The location as the user gave it (used in messages and passed to worker processes).
    root
        Local directory (when :attr:`is_local`) or the path inside the fsspec filesystem.
    protocol
        ``"file"`` for local stores, else the fsspec protocol (``"memory"``, ``"s3"``, ...).
    """

    text: str
    root: str
    protocol: str
    _fs: Any = field(default=None, compare=False, repr=False)

    @property
    def is_local(self) -> bool:
        return self.protocol == "file"

    @property
    def path(self) -> Path:
        """The local directory of a local store."""
        assert self.is_local, "only local stores have a path"
        return Path(self.root)

    @property
    def shared_between_processes(self) -> bool:
        """False for ``memory://``: its contents live inside one Python process."""
        return self.protocol != "memory"

    @property
    def fs(self) -> Any:
        return self._fs

    def zarr_store(self, read_only: bool = False) -> Any:
        """What ``zarr.open_group`` is given for this location (a path string or a Zarr store)."""
        if self.is_local:
            return self.root
        from zarr.storage import FsspecStore

        if self.protocol == "local":  # zarr's from_url would build fsspec's in-place writer
            from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

            fs = AsyncFileSystemWrapper(ObjectLikeLocalFileSystem(), asynchronous=True)
            return FsspecStore(fs=fs, path=self.root, read_only=read_only)
        return FsspecStore.from_url(self.url(), read_only=read_only)

    def url(self, *parts: str) -> str:
        """Full URL (or local path) of ``parts`` under the store root."""
        path = self.join(*parts)
        return path if self.is_local else f"{self.protocol}://{path}"

    def join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts]) if parts else self.root

    # -- byte-level files beside the arrays -------------------------------------------------------
    def exists(self, *parts: str) -> bool:
        path = self.join(*parts)
        return os.path.exists(path) if self.is_local else bool(self._fs.exists(path))

    def read_bytes(self, *parts: str) -> bytes | None:
        """Contents of a file under the store, or None when it does not exist."""
        path = self.join(*parts)
        try:
            if self.is_local:
                return Path(path).read_bytes()
            return bytes(self._fs.cat_file(path))
        except FileNotFoundError:
            return None

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Write a file so that a reader sees either its old or its new contents, never a part.

        Locally: a temporary file beside it, then ``os.replace``. On object stores one ``PUT``
        is already atomic (as is ``local://``'s write); other fsspec backends get a write then
        a move.
        """
        path = self.join(*parts)
        if self.is_local:
            _replace_whole(path, data)
        elif self.protocol in ("memory", "local", "s3", "s3a", "gs", "gcs", "az", "abfs"):
            self._fs.pipe_file(path, data)
        else:
            tmp = _temporary_name(path)
            self._fs.pipe_file(tmp, data)
            self._fs.mv(tmp, path)

    def remove(self, *parts: str) -> None:
        path = self.join(*parts)
        try:
            if self.is_local:
                os.unlink(path)
            else:
                self._fs.rm_file(path)
        except FileNotFoundError:
            pass


def parse_location(text: str | os.PathLike) -> StoreLocation:
    """Parse a store location given as a local path or an fsspec URL.

    Raises
    ------
    LocationError
        When the URL's protocol is unknown or its package is not installed.
    """
    text = os.fspath(text)
    protocol, sep, rest = text.partition("://")
    if not sep:
        return StoreLocation(text, str(Path(text)), "file")
    if protocol == "file":
        return StoreLocation(text, str(Path(rest)), "file")
    try:
        if protocol == "local":
            fs = ObjectLikeLocalFileSystem()
            root = fs._strip_protocol(text)
        else:
            fs, root = fsspec.core.url_to_fs(text)
    except ImportError as exc:
        package = _PROTOCOL_PACKAGES.get(protocol, f"the fsspec backend for {protocol}://")
        raise LocationError(
            f"{text}: {protocol}:// needs {package}, which is not installed ({exc}); "
            f"pip install {package}"
        ) from None
    except ValueError as exc:
        raise LocationError(
            f"{text}: unknown storage protocol {protocol!r} ({exc}); give a local path or a URL "
            "such as file://, memory://, s3:// or gs://"
        ) from None
    if not root.strip("/"):
        raise LocationError(f"{text}: the URL names no path; give one, e.g. {protocol}://bucket/x")
    return StoreLocation(text, root.rstrip("/"), protocol, fs)
