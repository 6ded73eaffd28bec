"""The node's image store: resumable verified uploads, atomic publication, listing.

Layout under the state root (see config.Layout)::

    images/NAME               symlink -> .blobs/SHA256   (the published image)
    images/.blobs/SHA256      the bytes, immutable once published
    images/.partial/NAME      an upload under way or interrupted (a prefix)
    locks/image-NAME.lock     held by the one request uploading NAME
    locks/images.lock         held briefly while names are re-pointed or blobs collected

Publishing is one rename of a symlink, so a reader (or a crash) sees the old image
or the new one, never a partial one. A partial file is only ever a prefix of what a
client sent; the client checks the prefix's sha256 before resuming (protocol.md).
"""

import contextlib
import errno
import hashlib
import os
import re
from typing import BinaryIO, Iterator, List, Optional, Tuple

from vzslave import fs
from vzslave.config import Layout, Limits
from vzslave.formats import sniff_format
from vzslave.errors import (
    BadRequestError,
    ChecksumMismatchError,
    DiskFullError,
    NoSuchImageError,
    OffsetMismatchError,
)
from vzslave.names import validate_name
from vzslave.records import ImageInfo, PartialInfo

_SHA256_HEX = re.compile(r"[0-9a-f]{64}\Z")
_HASH_BLOCK = 1024 * 1024

def _hash_prefix(fd: int, length: int) -> "hashlib._Hash":
    hasher = hashlib.sha256()
    done = 0
    while done < length:
        block = os.pread(fd, min(_HASH_BLOCK, length - done), done)
        if not block:
            break
        hasher.update(block)
        done += len(block)
    return hasher


class ImageStore:
    """Images on one node, addressed by validated name."""

    def __init__(self, layout: Layout, limits: Limits) -> None:
        self.layout = layout
        self.limits = limits

    # -- reading -------------------------------------------------------------

    def list(self) -> List[ImageInfo]:
        """Every published image, sorted by name."""
        found = map(self._info, fs.visible_names(self.layout.images))
        return [info for info in found if info is not None]

    def get(self, name: str) -> ImageInfo:
        """The image ``name``, or NoSuchImageError."""
        validate_name("image", name)
        info = self._info(name)
        if info is None:
            raise NoSuchImageError("no image named {!r} on this node".format(name))
        return info

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[Tuple[ImageInfo, BinaryIO]]:
        """The image ``name`` opened for reading; it stays readable if removed meanwhile."""
        with fs.exclusive_lock(self._store_lock, "the image store", blocking=True):
            info = self.get(name)
            stream = open(self._blob(info.sha256), "rb")
        with stream:
            yield info, stream

    def probe(self, name: str) -> Tuple[Optional[ImageInfo], Optional[PartialInfo]]:
        """The published image ``name`` and the kept prefix of an interrupted upload."""
        validate_name("image", name)
        image = self._info(name)
        with fs.exclusive_lock(self._name_lock(name), "image {!r}".format(name)):
            try:
                fd = os.open(self._partial(name), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return image, None
            try:
                size = os.fstat(fd).st_size
                partial = PartialInfo(size, _hash_prefix(fd, size).hexdigest())
            finally:
                os.close(fd)
        return image, partial

    # -- writing -------------------------------------------------------------

    @contextlib.contextmanager
    def upload(self, name: str, size: int, offset: int) -> Iterator["Upload"]:
        """Receive image ``name`` of ``size`` bytes, starting at byte ``offset``.

        Raises BusyError if another request is uploading ``name``, and
        OffsetMismatchError unless ``offset`` is 0 or the size of the kept prefix.
        A refusal at the request changes nothing. If the upload fails later, the
        bytes written are kept as a prefix to resume from (but for a checksum
        mismatch, which proves them wrong); an empty prefix is never kept.
        """
        validate_name("image", name)
        if not 0 <= offset <= size:
            raise BadRequestError("offset {} is outside the image's {} bytes".format(
                offset, size), {"argument": "offset"})
        with fs.exclusive_lock(self._name_lock(name), "image {!r}".format(name)):
            path = self._partial(name)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                yield Upload(self, name, fd, size, offset)
            finally:
                try:
                    # Nothing worth resuming: made by this request's open, or
                    # truncated by it and then refused or abandoned before a byte.
                    if os.fstat(fd).st_size == 0:
                        _unlink_if_present(path)
                finally:
                    os.close(fd)

    def remove(self, name: str) -> None:
        """Remove image ``name`` and any kept prefix of an upload of it."""
        validate_name("image", name)
        with fs.exclusive_lock(self._name_lock(name), "image {!r}".format(name)):
            had_partial = _unlink_if_present(self._partial(name))
            with fs.exclusive_lock(self._store_lock, "the image store", blocking=True):
                had_image = _unlink_if_present(os.path.join(self.layout.images, name))
                self._collect_blobs()
        if not (had_image or had_partial):
            raise NoSuchImageError("no image named {!r} on this node".format(name))

    # -- internals -----------------------------------------------------------

    @property
    def _store_lock(self) -> str:
        return os.path.join(self.layout.locks, "images.lock")

    def _name_lock(self, name: str) -> str:
        return os.path.join(self.layout.locks, "image-{}.lock".format(name))

    def _partial(self, name: str) -> str:
        return os.path.join(self.layout.partial, name)

    def _blob(self, sha256: str) -> str:
        return os.path.join(self.layout.blobs, sha256)

    def _info(self, name: str) -> Optional[ImageInfo]:
        link = os.path.join(self.layout.images, name)
        try:
            target = os.readlink(link)
            link_st = os.lstat(link)
        except OSError:
            return None
        sha256 = os.path.basename(target)
        if not _SHA256_HEX.match(sha256):
            return None
        try:
            with open(self._blob(sha256), "rb") as blob:
                size = os.fstat(blob.fileno()).st_size
                head = blob.read(512)
        except FileNotFoundError:
            return None
        return ImageInfo(name, size, sha256, sniff_format(head), link_st.st_mtime)

    def _publish(self, name: str, fd: int, sha256: str) -> ImageInfo:
        os.fsync(fd)
        with fs.exclusive_lock(self._store_lock, "the image store", blocking=True):
            blob = self._blob(sha256)
            if os.path.exists(blob):  # same bytes under another name: share them
                os.unlink(self._partial(name))
            else:
                os.rename(self._partial(name), blob)
                fs.fsync_dir(self.layout.blobs)
            fs.fsync_dir(self.layout.partial)
            fs.atomic_symlink(os.path.join(".blobs", sha256),
                              os.path.join(self.layout.images, name))
            self._collect_blobs()
        info = self._info(name)
        assert info is not None
        return info

    def _collect_blobs(self) -> None:
        # Called with the store lock held: no name can be re-pointed meanwhile.
        used = set()
        for name in fs.visible_names(self.layout.images):
            path = os.path.join(self.layout.images, name)
            if os.path.islink(path):
                used.add(os.path.basename(os.readlink(path)))
        for sha256 in os.listdir(self.layout.blobs):
            if sha256 not in used:
                _unlink_if_present(self._blob(sha256))


class Upload:
    """One upload under way: ``write`` the bytes after ``offset``, then ``commit``."""

    def __init__(self, store: ImageStore, name: str, fd: int, size: int,
                 offset: int) -> None:
        self._store = store
        self.name = name
        self._fd = fd
        self.size = size
        self.offset = offset
        kept = os.fstat(fd).st_size
        if offset not in (0, kept):
            raise OffsetMismatchError(
                "the node holds {} bytes of image {!r}, the upload starts at {}; probe "
                "again".format(kept, name, offset), {"have": kept})
        # Checked before the prefix is dropped, so that a refusal changes nothing;
        # starting afresh frees what the prefix took.
        usable = store.limits.usable(fs.free_space(store.layout.partial))
        if offset == 0:
            usable += kept
        if size - offset > usable:
            raise DiskFullError(
                "image {!r} needs {} more bytes but only {} are free under {}; free some "
                "space (vzmaster rm-image, rm-bundle) and push again".format(
                    name, size - offset, usable, store.layout.root),
                {"needed": size - offset, "free": usable})
        if offset == 0:
            os.ftruncate(fd, 0)
        self._hasher = _hash_prefix(fd, offset)
        self.received = offset

    def write(self, chunk: bytes) -> None:
        """Append one chunk of the image."""
        if self.received + len(chunk) > self.size:
            raise BadRequestError("more than the announced {} bytes of image {!r}".format(
                self.size, self.name), {"size": self.size, "received": self.received})
        view = memoryview(chunk)
        try:
            while view:
                written = os.pwrite(self._fd, view, self.received)
                view = view[written:]
                self.received += written
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(
                    "the disk under {} filled up after {} of {} bytes of image {!r}; free "
                    "some space and push again: the upload resumes where it stopped".format(
                        self._store.layout.root, self.received, self.size, self.name),
                    {"errno": exc.errno}) from exc
            raise
        self._hasher.update(chunk)

    def kept(self) -> Optional[PartialInfo]:
        """What stays of this upload if it ends now: the prefix written, or None."""
        if not self.received:
            return None
        return PartialInfo(self.received, self._hasher.copy().hexdigest())

    def commit(self, sha256: str) -> ImageInfo:
        """Check size and ``sha256``, then publish the image under its name."""
        if not isinstance(sha256, str) or not _SHA256_HEX.match(sha256):
            raise BadRequestError("the end frame's trailer needs 'sha256': 64 lowercase hex "
                                  "digits", {"trailer": "sha256"})
        if self.received != self.size:
            raise BadRequestError("the stream ended after {} of {} bytes of image {!r}".format(
                self.received, self.size, self.name),
                {"size": self.size, "received": self.received})
        actual = self._hasher.hexdigest()
        if actual != sha256:
            # The prefix cannot be trusted either: the next push starts afresh.
            os.unlink(self._store._partial(self.name))
            raise ChecksumMismatchError(
                "image {!r} arrived with sha256 {} but the client sent {}; it was "
                "discarded, push it again".format(self.name, actual, sha256),
                {"expected": sha256, "actual": actual})
        return self._store._publish(self.name, self._fd, sha256)


def _unlink_if_present(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
