"""The node's bundle store: images unpacked into OCI bundles, replaced atomically.

Layout under the state root (see config.Layout)::

    bundles/NAME                        symlink -> .trees/NAME.TOKEN
    bundles/.trees/NAME.TOKEN/          config.json, the root filesystem, .vzbundle.json
    locks/bundle-NAME.lock              held while NAME is unpacked or removed

An unpack extracts into a fresh tree, flushes it to disk, then re-points the
symlink in one rename: until that moment the old bundle is untouched, so a killed
vzslave, a full disk or a hostile image leaves the previous bundle as it was. Trees
no symlink points to (left by a crash) are removed by the next unpack or removal.
``bundles/NAME`` is a normal OCI bundle directory: ``runc run --bundle`` takes it.
"""

import binascii
import json
import logging
import os
import time
from typing import Callable, List, Optional, Set

from vzslave import fs
from vzslave.config import Layout, Limits
from vzslave.errors import (
    BadFrameError,
    BusyError,
    NoSuchBundleError,
    PermissionDeniedError,
)
from vzslave.images import ImageStore
from vzslave.names import validate_name
from vzslave.oci import load_config
from vzslave.policy import load_policy
from vzslave.records import BundleInfo, from_wire, to_wire

log = logging.getLogger(__name__)

META = ".vzbundle.json"  # vz's record beside config.json; images cannot contain it


class BundleStore:
    """Bundles on one node, addressed by validated name."""

    def __init__(self, layout: Layout, limits: Limits, images: ImageStore) -> None:
        self.layout = layout
        self.limits = limits
        self.images = images
        # Trees that started containers run from: never garbage, whatever the name
        # points at now (set by the container store; see vzslave/containers.py).
        self.in_use: Callable[[], Set[str]] = set
        # Called with a bundle's name when it is removed: its stopped container's state
        # and logs go with it (set by the container store).
        self.forget: Callable[[str], None] = lambda name: None

    def path(self, name: str) -> str:
        """The bundle directory of ``name`` (through its symlink)."""
        return os.path.join(self.layout.bundles, validate_name("bundle", name))

    def list(self) -> List[BundleInfo]:
        """Every bundle, sorted by name."""
        found = map(self._info, fs.visible_names(self.layout.bundles))
        return [info for info in found if info is not None]

    def get(self, name: str) -> BundleInfo:
        """The bundle ``name``, or NoSuchBundleError."""
        info = self._info(validate_name("bundle", name))
        if info is None:
            raise NoSuchBundleError("no bundle named {!r} on this node".format(name))
        return info

    def unpack(self, image: str, name: str, keep_setid: bool = False) -> BundleInfo:
        """Unpack image ``image`` into bundle ``name``, replacing any old one at the end."""
        validate_name("image", image)
        validate_name("bundle", name)
        if keep_setid and os.geteuid() != 0:
            raise PermissionDeniedError("keeping setuid/setgid bits needs vzslave to run "
                                        "as root")
        with fs.exclusive_lock(self._lock(name), "bundle {!r}".format(name)):
            self._collect_trees(name)
            tree = os.path.join(self.layout.trees, "{}.{}".format(
                name, binascii.hexlify(os.urandom(4)).decode()))
            info = self.extract(image, tree, name, keep_setid)
            link = os.path.join(self.layout.bundles, name)
            old = _readlink(link)
            fs.atomic_symlink(os.path.join(".trees", os.path.basename(tree)), link)
            if old is not None:
                self._collect_trees(name)
        return info

    def extract(self, image: str, tree: str, name: str, keep_setid: bool = False) -> BundleInfo:
        """Unpack image ``image`` into the new directory ``tree`` (a bundle ``name``'s, or
        an app release's), checked against the node's policy and flushed to disk; on any
        failure nothing of ``tree`` is left."""
        # Imported here: tarfile and the decompressors would cost every session.
        from vzslave.formats import decompressed
        from vzslave.unpack import extract_bundle

        as_root = os.geteuid() == 0
        if keep_setid and not as_root:
            raise PermissionDeniedError("keeping setuid/setgid bits needs vzslave to run "
                                        "as root")
        with self.images.open(image) as (image_info, stream):
            free = fs.free_space(os.path.dirname(tree))
            try:
                with decompressed(stream, image_info.format) as tar_stream:
                    result = extract_bundle(
                        tar_stream, tree, self.limits, space=self.limits.usable(free),
                        inodes=free.inodes, as_root=as_root, keep_setid=keep_setid,
                        block_size=free.block)
                # The node's policy, at unpack as at start: nothing it forbids lands.
                load_policy(self.layout.policy).check_config(load_config(tree), tree)
                info = BundleInfo(name, image_info.name, image_info.sha256, time.time(),
                                  result.files, result.bytes, result.setid_stripped)
                fs.atomic_write(os.path.join(tree, META),
                                json.dumps(to_wire(info)).encode(), 0o600)
                # Everything on disk before a name points at it: after a power cut the
                # bundle is the old one or the complete new one.
                fs.sync_filesystem(tree)
            except BaseException:
                fs.remove_tree(tree)
                raise
        return info

    def remove(self, name: str) -> None:
        """Remove bundle ``name`` and its tree; BusyError if something is mounted in it."""
        link = self.path(name)
        with fs.exclusive_lock(self._lock(name), "bundle {!r}".format(name)):
            target = _readlink(link)
            if target is None:
                raise NoSuchBundleError("no bundle named {!r} on this node".format(name))
            tree = os.path.join(self.layout.bundles, target)
            if os.path.realpath(tree) in self.in_use():
                raise BusyError("bundle {!r} is in use by its container; stop the container "
                                "first".format(name), {"container": name})
            mounted = fs.mounts_under(tree)
            if mounted:
                fs.remove_tree(tree)  # raises BusyError naming the mounts
            os.unlink(link)
            fs.fsync_dir(self.layout.bundles)
            fs.remove_tree(tree)
            self._collect_trees(name)
        # After the bundle's lock: a stop holds the container's, then takes the bundle's.
        self.forget(name)

    def collect_garbage(self, name: str) -> None:
        """Remove the trees of ``name`` that neither the name nor a container uses."""
        with fs.exclusive_lock(self._lock(name), "bundle {!r}".format(name), blocking=True):
            self._collect_trees(name)

    # -- internals -----------------------------------------------------------

    def _lock(self, name: str) -> str:
        return os.path.join(self.layout.locks, "bundle-{}.lock".format(name))

    def _info(self, name: str) -> Optional[BundleInfo]:
        link = os.path.join(self.layout.bundles, name)
        if _readlink(link) is None:
            return None
        try:
            with open(os.path.join(link, META), "rb") as meta:
                return from_wire(BundleInfo, json.loads(meta.read().decode("utf-8")))
        except (OSError, ValueError, BadFrameError) as exc:
            log.warning("bundle %s has no readable %s: %s", name, META, exc)
            return None

    def _collect_trees(self, name: str) -> None:
        # Called with the bundle's lock held: no unpack of ``name`` is under way,
        # so any tree of ``name`` the symlink does not point to is garbage.
        current = _readlink(os.path.join(self.layout.bundles, name))
        keep = {os.path.basename(tree) for tree in self.in_use()}
        if current:
            keep.add(os.path.basename(current))
        for entry in os.listdir(self.layout.trees):
            if entry.rpartition(".")[0] == name and entry not in keep:
                self._remove_tree_quietly(os.path.join(self.layout.trees, entry))

    def _remove_tree_quietly(self, tree: str) -> None:
        try:
            fs.remove_tree(tree)
        except Exception as exc:  # the new bundle is in place; the old is garbage
            log.warning("could not remove old bundle tree %s: %s", tree, exc)


def _readlink(path: str) -> Optional[str]:
    try:
        return os.readlink(path)
    except OSError:
        return None
