"""Backfill checkpoints: which slices of a window are done, so a rerun continues with the rest.

Only an optimisation: a slice that is done has nothing left in Telnyx, so re-listing it would be
harmless, just slower. Correctness never depends on this file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path

from pipeline.archive.options import Window


class Checkpoints:
    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._done: list[tuple[datetime, datetime]] = []
        if path is not None and path.exists():
            data = json.loads(path.read_text())
            self._done = [
                (datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in data["done"]
            ]

    @classmethod
    def for_window(cls, state_dir: str | None, window: Window) -> Checkpoints:
        if not state_dir:
            return cls(None)
        tag = hashlib.sha256(f"{window.since.isoformat()}|{window.until.isoformat()}".encode())
        name = f"backfill-{window.since:%Y%m%dT%H%M%S}-{window.until:%Y%m%dT%H%M%S}-{tag.hexdigest()[:8]}.json"
        return cls(Path(state_dir).expanduser() / name)

    @property
    def done_ranges(self) -> list[tuple[datetime, datetime]]:
        return list(self._done)

    def covers(self, since: datetime, until: datetime) -> bool:
        return any(a <= since and until <= b for a, b in self._done)

    def mark_done(self, since: datetime, until: datetime) -> None:
        if self._path is None:
            return
        self._done.append((since, until))
        self._done = _merge(self._done)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"done": [[a.isoformat(), b.isoformat()] for a, b in self._done]})
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".ckpt-")
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path)


def _merge(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged
