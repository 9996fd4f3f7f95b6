"""A folder on this machine (the embedded default destination).

Each object is written to a temporary name beside its final one, fsynced, renamed into place
(atomic on POSIX) and its directory fsynced, so a crash leaves the old object or the new one,
never a torn one. The folder itself must exist: a missing mount point is an error, not a new
empty directory on the wrong disk.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from pipeline.storage._common import READ_CHUNK, ChunkSource, ThreadedBackend
from pipeline.storage.base import META_SHA256, SHA256, ObjectStat, StorageError, StoredObject
from pipeline.storage.settings import StorageSettings

_TEMP = re.compile(r"^\..+\.[0-9a-f]{32}\.partial$")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(READ_CHUNK):
            h.update(block)
    return h.hexdigest()


class LocalBackend(ThreadedBackend):
    scheme = "file"

    def __init__(
        self, *, root: str | os.PathLike[str], settings: StorageSettings, prefix: str = ""
    ) -> None:
        path = Path(root)
        if not path.is_absolute():
            raise ValueError("a local destination needs an absolute path")
        super().__init__(name="local", bucket=str(path), prefix=prefix, settings=settings)
        self.root = path
        self._part_size = max(64 * 1024, settings.part_size)

    @property
    def label(self) -> str:
        return f"local folder {self.bucket!r}"

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def root_uri(self) -> str:
        base = self.root / self.prefix if self.prefix else self.root
        return base.as_uri().rstrip("/") + "/"

    def _path(self, key: str) -> Path:
        path = self.root / self.full_key(key)
        # Keys are already free of "..": this catches a symlink inside the folder pointing out.
        real_root = self.root.resolve()
        if not path.resolve().is_relative_to(real_root):
            raise ValueError("key resolves outside the destination folder")
        return path

    def _wrap(self, exc: OSError) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        problems = {
            errno.ENOENT: "folder does not exist",
            errno.EACCES: "permission denied",
            errno.EPERM: "permission denied",
            errno.EROFS: "folder is on a read-only file system",
            errno.ENOSPC: "no space left on the device",
            errno.EDQUOT: "disk quota exceeded",
            errno.ENOTDIR: "a path component is a file, not a folder",
            errno.EISDIR: "the key names a folder",
        }
        return self.error(problems.get(exc.errno or 0, f"{type(exc).__name__} (errno {exc.errno})"))

    def _prepare_dir(self, path: Path) -> None:
        if not self.root.is_dir():
            raise self.error(
                "folder does not exist" if not self.root.exists() else "is not a folder"
            )
        path.parent.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _temp_for(path: Path) -> Path:
        return path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")

    def _commit(self, temp: Path, path: Path) -> None:
        os.replace(temp, path)
        _fsync_dir(path.parent)

    # -- writes -------------------------------------------------------------------------------

    async def write_small(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        path = self._path(key)

        def write() -> str:
            self._prepare_dir(path)
            temp = self._temp_for(path)
            try:
                with open(temp, "xb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                self._commit(temp, path)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            return hashlib.sha256(data).hexdigest()

        async with self._sem:
            try:
                sha = await self.run(write)
            except OSError as exc:
                raise self._wrap(exc) from None
        return self.stored(key, len(data), sha, {SHA256: sha, META_SHA256: sha})

    async def write_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        expected_size: int | None = None,
    ) -> StoredObject:
        path = self._path(key)
        src = ChunkSource(chunks, label=self.label, expected_size=expected_size)
        async with self._sem:
            try:
                await self.run(self._prepare_dir, path)
                temp = self._temp_for(path)
                f = await self.run(open, temp, "xb")
            except OSError as exc:
                raise self._wrap(exc) from None
            try:
                try:
                    while not src.done:
                        block = await src.read(self._part_size)
                        if block:
                            await self.run(f.write, block)
                    await self.run(f.flush)
                    await self.run(os.fsync, f.fileno())
                finally:
                    await self.run(f.close)
                await self.run(self._commit, temp, path)
            except BaseException as exc:
                await self.run(temp.unlink, missing_ok=True)
                if isinstance(exc, OSError):
                    raise self._wrap(exc) from None
                raise
        sha = src.sha256
        return self.stored(key, src.size, sha, {SHA256: sha, META_SHA256: sha})

    # -- reads --------------------------------------------------------------------------------

    async def stat(self, key: str) -> ObjectStat | None:
        path = self._path(key)

        def look() -> ObjectStat | None:
            try:
                size = path.stat().st_size
                if not path.is_file():
                    return None
                sha = _sha256_file(path)  # cheap on a local disk; there is no stored checksum
            except FileNotFoundError:
                return None
            return ObjectStat(key, size, {SHA256: sha, META_SHA256: sha})

        async with self._sem:
            try:
                return await self.run(look)
            except NotADirectoryError:
                return None
            except OSError as exc:
                raise self._wrap(exc) from None

    def read_stream(self, key: str) -> AsyncIterator[bytes]:
        return self._read(key, self._path(key))

    async def _read(self, key: str, path: Path) -> AsyncIterator[bytes]:
        async with self._sem:
            try:
                f = await self.run(open, path, "rb")
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise self.error(f"object {key!r} does not exist") from None
            except OSError as exc:
                raise self._wrap(exc) from None
            try:
                while block := await self.run(f.read, READ_CHUNK):
                    yield block
            finally:
                f.close()

    async def list(self, prefix: str) -> list[ObjectStat]:
        full_prefix = self.full_prefix(prefix)
        # Walk only the deepest folder the prefix names, then filter by the full string.
        start = self.root / full_prefix.rpartition("/")[0] if "/" in full_prefix else self.root

        def walk() -> list[ObjectStat]:
            out: list[ObjectStat] = []
            for dirpath, _dirs, files in os.walk(start):
                for name in files:
                    if _TEMP.match(name):
                        continue
                    path = Path(dirpath) / name
                    rel = path.relative_to(self.root).as_posix()
                    if rel.startswith(full_prefix) and (not self.prefix or rel != self.prefix):
                        out.append(ObjectStat(self.relative(rel), path.stat().st_size, {}))
            return sorted(out, key=lambda s: s.key)

        async with self._sem:
            try:
                return await self.run(walk)
            except OSError as exc:
                raise self._wrap(exc) from None

    async def delete(self, key: str) -> None:
        path = self._path(key)

        def remove() -> None:
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError):
                return
            _fsync_dir(path.parent)

        async with self._sem:
            try:
                await self.run(remove)
            except OSError as exc:
                raise self._wrap(exc) from None
