"""A cache of the sha256 of image files, keyed by what stat says about them.

Pushing an image that a node already holds, or the same image to many nodes, then
needs no re-hashing of the file: the cache answers at once. The key is the file's
path, device, inode, size and modification time in nanoseconds, the same quick
check git's index and rsync use. A file modified in the same clock tick as it was
hashed would fool that check, so digests of files changed in the last two seconds
are not cached ("racy" entries, as git calls them).
"""

from __future__ import annotations

import json
import os
import time

_MAX_ENTRIES = 1000
_RACY_SECONDS = 2.0


def _default_path() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "vz", "digests.json")


class DigestCache:
    """sha256 digests of files, valid while the file's stat key is unchanged."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or _default_path()

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        """The cached hex digest of ``path`` if it has not changed since."""
        entry = self._load().get(os.path.realpath(path))
        if entry is not None and entry[:4] == _key(st):
            return str(entry[4])
        return None

    def store(self, path: str, st: os.stat_result, digest: str) -> None:
        """Remember ``digest`` for ``path`` as ``st`` describes it (best effort)."""
        if time.time() - st.st_mtime < _RACY_SECONDS:
            return
        entries = self._load()
        real = os.path.realpath(path)
        entries.pop(real, None)
        entries[real] = _key(st) + [digest]
        while len(entries) > _MAX_ENTRIES:
            entries.pop(next(iter(entries)))  # the oldest insertion first
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            tmp = "{}.{}.tmp".format(self.path, os.getpid())
            with open(tmp, "w") as out:
                json.dump(entries, out)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only costs time

    def _load(self) -> dict[str, list[object]]:
        try:
            with open(self.path) as source:
                data = json.load(source)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def _key(st: os.stat_result) -> list[object]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]
