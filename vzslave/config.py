"""Where the node keeps its state, and the limits it enforces: all from one root."""

import os
from typing import NamedTuple

from vzslave.fs import FreeSpace

DEFAULT_ROOT = "/var/lib/vz"
MAX_IMAGE_SIZE = 1 << 40  # bytes of one image (1 TiB); hello reports it as max_image


class Limits(NamedTuple):
    """Caps that keep a hostile or broken image from exhausting the node."""

    max_entries: int = 200000  # tarball members per image
    max_member_size: int = 8 * 1024 ** 3  # bytes of one member
    max_path_length: int = 2048  # characters of one member path
    max_path_depth: int = 96  # components of one member path
    reserve_bytes: int = 16 * 1024 ** 2  # free space an unpack or upload leaves alone

    def usable(self, free: "FreeSpace") -> int:
        """Bytes an upload or unpack may use: the free space less the reserve, which
        shrinks to 2% of the disk on disks too small for the full reserve."""
        return max(free.bytes - min(self.reserve_bytes, free.total // 50), 0)


class Layout(NamedTuple):
    """Every path vzslave touches, derived from the state root (``vzslave --root``)."""

    root: str

    @property
    def images(self) -> str:
        """One symlink per image name, pointing into ``blobs``."""
        return os.path.join(self.root, "images")

    @property
    def blobs(self) -> str:
        """Image contents, named by their sha256."""
        return os.path.join(self.root, "images", ".blobs")

    @property
    def partial(self) -> str:
        """Uploads in progress or interrupted, one file per image name."""
        return os.path.join(self.root, "images", ".partial")

    @property
    def bundles(self) -> str:
        """One symlink per bundle name, pointing into ``trees``."""
        return os.path.join(self.root, "bundles")

    @property
    def trees(self) -> str:
        """Unpacked bundle trees; also the staging place of unpacks under way."""
        return os.path.join(self.root, "bundles", ".trees")

    @property
    def locks(self) -> str:
        """Lock files that serialise concurrent vzslave processes."""
        return os.path.join(self.root, "locks")

    @property
    def containers(self) -> str:
        """One directory per container: its exec plan and its run record."""
        return os.path.join(self.root, "containers")

    def container_dir(self, name: str) -> str:
        """The state of one container (``name`` already validated)."""
        return os.path.join(self.root, "containers", name)

    @property
    def logs(self) -> str:
        """Container output: ``NAME.log`` and its rotated ``NAME.log.1`` ... files."""
        return os.path.join(self.root, "logs")

    def log_file(self, name: str) -> str:
        """The current log file of container ``name`` (``name`` already validated)."""
        return os.path.join(self.root, "logs", name + ".log")

    @property
    def apps(self) -> str:
        """One directory per app: app.json and its releases (vzslave/apps.py)."""
        return os.path.join(self.root, "apps")

    def app_dir(self, name: str) -> str:
        """The state of one app (``name`` already validated)."""
        return os.path.join(self.root, "apps", name)

    @property
    def secrets(self) -> str:
        """The secret store: ``APP/RELEASE`` files, 0600, the one place values are kept."""
        return os.path.join(self.root, "secrets")

    @property
    def volumes(self) -> str:
        """Volumes: ``APP/NAME`` directories that outlive every release."""
        return os.path.join(self.root, "volumes")

    @property
    def bin(self) -> str:
        """Programs init runs: the ``vzrun`` launcher named by every inittab entry."""
        return os.path.join(self.root, "bin")

    @property
    def launcher(self) -> str:
        """The launcher inittab entries exec: ``ROOT/bin/vzrun NAME``."""
        return os.path.join(self.root, "bin", "vzrun")

    @property
    def policy(self) -> str:
        """The node's policy: what containers may ask of it (vzslave/policy.py)."""
        return os.path.join(self.root, "policy.json")

    @property
    def firewall(self) -> str:
        """What the node's firewall chain was last asked and applied (vzslave/firewall.py)."""
        return os.path.join(self.root, "firewall.json")

    @property
    def reserve(self) -> str:
        """Space kept for a stop on a full disk (fs.keep_reserve)."""
        return os.path.join(self.root, ".reserve")

    @property
    def log_dir(self) -> str:
        """vzslave's own diagnostics (never stdout: that belongs to the protocol)."""
        return os.path.join(self.root, "log")

    def make_dirs(self) -> None:
        """Create the state directories; the root is private to its owner (0700)."""
        # 0700: rootfs trees may hold setuid files and secrets that no other local
        # user of the node should reach.
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        for path in (self.images, self.blobs, self.partial, self.bundles, self.trees,
                     self.locks, self.log_dir, self.containers, self.logs, self.bin,
                     self.apps, self.secrets, self.volumes):
            os.makedirs(path, mode=0o700, exist_ok=True)
