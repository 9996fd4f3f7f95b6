"""Local folder specifics: temp files, symlink escapes, a missing mount point."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.storage.base import IncompleteStreamError, StorageError
from pipeline.storage.local import LocalBackend
from pipeline.storage.settings import MiB, StorageSettings
from tests.test_storage_contract import Producer


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


async def test_a_broken_stream_leaves_no_temporary_file(tmp_path: Path) -> None:
    backend = LocalBackend(root=tmp_path, settings=StorageSettings(part_size=1 * MiB))
    with pytest.raises(IncompleteStreamError):
        await backend.write_stream(
            "a/b.mp3", aiter(Producer(4 * MiB, fail_after=2 * MiB)), content_type="audio/mpeg"
        )
    assert files_under(tmp_path) == []


async def test_a_write_lands_under_the_prefix_as_a_plain_file(tmp_path: Path) -> None:
    backend = LocalBackend(root=tmp_path, settings=StorageSettings(), prefix="arch")
    stored = await backend.write_stream("d/x.mp3", aiter(Producer(1000)), content_type="audio/mpeg")
    assert files_under(tmp_path) == ["arch/d/x.mp3"]
    assert stored.uri == (tmp_path / "arch/d/x.mp3").as_uri()
    assert [s.key for s in await backend.list("")] == ["d/x.mp3"]


async def test_a_symlink_pointing_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    backend = LocalBackend(root=root, settings=StorageSettings())
    with pytest.raises(ValueError, match="outside the destination folder"):
        await backend.write_small("link/x.mp3", b"x", content_type="audio/mpeg")
    assert list(outside.iterdir()) == []


async def test_a_missing_folder_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    root = tmp_path / "not-mounted"
    backend = LocalBackend(root=root, settings=StorageSettings())
    with pytest.raises(StorageError, match="folder does not exist"):
        await backend.write_small("x.mp3", b"x", content_type="audio/mpeg")
    assert not root.exists()


async def test_listing_skips_writes_in_progress(tmp_path: Path) -> None:
    backend = LocalBackend(root=tmp_path, settings=StorageSettings())
    await backend.write_small("a/done.mp3", b"1", content_type="audio/mpeg")
    (tmp_path / "a" / f".next.mp3.{'0' * 32}.partial").write_bytes(b"half")
    assert [s.key for s in await backend.list("a/")] == ["a/done.mp3"]


def test_a_relative_folder_is_refused() -> None:
    with pytest.raises(ValueError, match="absolute path"):
        LocalBackend(root="relative/dir", settings=StorageSettings())
