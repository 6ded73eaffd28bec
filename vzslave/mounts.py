"""The container's mounts, made safely: no symlink in the image can redirect a mount.

The rootfs is first bound onto itself (pivot_root needs a mount point). Every
destination is opened component by component relative to the rootfs fd with
O_NOFOLLOW, and so is every bind source inside the bundle (an image's
``rootfs/x -> /etc`` must not bind the node's /etc); sources and destinations are then
mounted through /proc/self/fd, never by a path the image could redirect. ``release``
unmounts everything at or under the rootfs.

vzslave calls ``prepare`` and ``release`` at start and stop. The runner imports this
module only when it actually mounts (a spawn whose mounts were prepared in the host
this boot never does), so like the runner it imports almost nothing at the top: the
runner's leaf (vzslave/runio.py: its error, the boot marker), never the runner itself.
"""

import os

from vzslave import linux
from vzslave.runio import RunnerError, boot_marked, mark_boot, os_message, unmark_boot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Set, Tuple
    Plan = Dict[str, Any]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _has_mount_namespace(plan: "Plan") -> bool:
    return any(ns["type"] == "mount" for ns in plan["namespaces"])


def set_up(plan: "Plan") -> None:
    """The runner's step 7: the plan's mounts; skipped when prepared in the host this boot."""
    fresh = any(ns["type"] == "mount" and not ns.get("path") for ns in plan["namespaces"])
    if fresh:
        mount_plan(plan, only_missing=False)  # they all vanish with the namespace
    elif _has_mount_namespace(plan):
        mount_plan(plan, only_missing=True)  # a joined namespace may hold them already
    elif not boot_marked(plan["state_dir"]):
        mount_plan(plan, only_missing=True)  # after a reboot: prepare() is stale
        mark_boot(plan["state_dir"])


def prepare(plan: "Plan") -> None:
    """Mount the plan in the host's mount namespace (at start time) and mark the boot.

    Does nothing for plans with a mount namespace or a runc/crun runtime: their runner
    mounts at every spawn. Raises BadConfigError (mounts made so far are released).
    """
    if plan["runtime"] != "builtin" or _has_mount_namespace(plan):
        return
    try:
        mount_plan(plan, only_missing=True)
        mark_boot(plan["state_dir"])
    except (RunnerError, OSError) as exc:
        release(plan)
        from vzslave.errors import BadConfigError
        message = exc.message if isinstance(exc, RunnerError) else os_message(exc)
        raise BadConfigError("cannot prepare the mounts of container {!r}: {}".format(
            plan["name"], message), {"step": "mounts"}) from exc


def make_parent_private(rootfs: str) -> None:
    """Make the mount below the rootfs's private, as runc does for a shared root
    propagation: pivot_root refuses a new root whose parent mount is shared."""
    from vzslave.fs import mount_points
    parents = [point for point in mount_points() if point != rootfs and (
        point == "/" or rootfs.startswith(point.rstrip("/") + "/"))]
    if parents:
        linux.mount(None, max(parents, key=len), None, linux.MS_PRIVATE)


def release(plan: "Plan") -> "List[str]":
    """Unmount everything at or under the rootfs, deepest first; the mounts left over."""
    from vzslave.fs import mounts_under
    rootfs = plan["rootfs"]
    for _ in range(8):
        points = mounts_under(rootfs)
        if not points:
            break
        # Deepest first; of mounts stacked on one point, the last mounted (listed last).
        for point in sorted(reversed(points), key=lambda p: p.count("/"), reverse=True):
            try:
                linux.umount2(point, linux.UMOUNT_NOFOLLOW)
            except OSError:
                try:
                    linux.umount2(point, linux.UMOUNT_NOFOLLOW | linux.MNT_DETACH)
                except OSError:
                    pass
    unmark_boot(plan["state_dir"])
    return mounts_under(rootfs)


def mount_plan(plan: "Plan", only_missing: bool) -> None:
    """Make the plan's mounts, device nodes, links, masks and read-only paths.

    With ``only_missing``, skip destinations that are mount points already.
    """
    rootfs = plan["rootfs"]
    mounted: "Set[str]" = set()
    if only_missing:
        from vzslave.fs import mounts_under
        mounted = set(mounts_under(rootfs))
    if rootfs.rstrip("/") not in mounted:
        # pivot_root needs the new root to be a mount point; everything below is mounted
        # on this bind, so it is opened (by path: the mount on top) only after it.
        try:
            linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
        except OSError as exc:
            raise RunnerError("mounts", "cannot bind the rootfs {} onto itself: {}".format(
                rootfs, exc.strerror)) from exc
    old_umask = os.umask(0)  # device and directory modes exactly as the plan says
    root = os.open(rootfs, _DIR)
    try:
        fresh_dev = False
        for mount in plan["mounts"]:
            if rootfs.rstrip("/") + mount["destination"] not in mounted:
                _mount_one(root, mount, plan)
                fresh_dev |= mount["destination"] == "/dev" and mount["type"] == "tmpfs"
        if fresh_dev:
            for device in plan["devices"]:
                _make_device(root, device)
            for path, target in plan["links"]:
                parent, name = _open_parent(root, path, "link")
                try:
                    os.symlink(target, name, dir_fd=parent)
                except FileExistsError:
                    pass
                finally:
                    os.close(parent)
        for path in plan["masked_paths"]:
            if rootfs.rstrip("/") + path not in mounted:
                _mask(root, path)
        for path in plan["readonly_paths"]:
            _make_readonly(root, path, rootfs)
        if plan["readonly"]:
            _make_readonly(root, "/", rootfs)
    finally:
        os.close(root)
        os.umask(old_umask)


def _step(fd: int, part: str, create: bool, what: str, dest: str, last: bool) -> int:
    """Open directory ``part`` under ``fd`` without following a symlink; -1 if absent."""
    try:
        return os.open(part, _DIR, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            return -1
        try:
            os.mkdir(part, 0o755, dir_fd=fd)
        except FileExistsError:
            pass
        return _step(fd, part, False, what, dest, last)
    except OSError as exc:
        if not _is_link(fd, part):
            raise RunnerError("mounts", "{} {}: cannot open {} in the image: {}".format(
                what, dest, part, exc.strerror)) from exc
        if last:
            raise RunnerError("mounts", "{} {} is a symlink in the image; refusing".format(
                what, dest)) from exc
        raise RunnerError("mounts", "{} {} goes through {}, a symlink in the image; "
                          "refusing".format(what, dest, part)) from exc


def _is_link(fd: int, name: str) -> bool:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode & 0o170000 == 0o120000
    except OSError:
        return False


def _walk(root: int, parts: "List[str]", create: bool, what: str, dest: str) -> int:
    """The directory ``parts`` below ``root``, component by component; -1 if absent."""
    fd = os.dup(root)
    for index, part in enumerate(parts):
        if part == "..":
            os.close(fd)
            raise RunnerError("mounts", "{} {} contains ..; refusing".format(what, dest))
        try:
            child = _step(fd, part, create, what, dest, index == len(parts) - 1)
        finally:
            os.close(fd)
        if child < 0:
            return -1
        fd = child
    return fd


def _parts(dest: str) -> "List[str]":
    return [part for part in dest.split("/") if part and part != "."]


def _open_parent(root: int, dest: str, what: str, create: bool = True) -> "Tuple[int, str]":
    """The directory holding ``dest`` (-1 if absent) and the last component's name."""
    parts = _parts(dest)
    if not parts:
        raise RunnerError("mounts", "{} {} names the root; refusing".format(what, dest))
    return _walk(root, parts[:-1], create, what, dest), parts[-1]


def _open_target(root: int, dest: str, directory: bool, create: bool = True,
                 what: str = "mount destination") -> int:
    """An fd of ``dest`` in the rootfs to mount onto (O_PATH for files); -1 if absent."""
    if directory:
        return _walk(root, _parts(dest), create, what, dest)
    parent, name = _open_parent(root, dest, what, create)
    if parent < 0:
        return -1
    try:
        if create:
            try:
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o644, dir_fd=parent))
            except FileExistsError:
                pass
        if _is_link(parent, name):
            raise RunnerError("mounts", "{} {} is a symlink in the image; refusing".format(
                what, dest))
        try:
            return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except FileNotFoundError:
            return -1
    finally:
        os.close(parent)


def _mount_fd(fd: int, dest: str, source: "Optional[str]", fstype: "Optional[str]",
              flags: int, data: "Optional[str]" = None) -> None:
    """mount(2) onto the open ``fd`` (never a path the image could redirect)."""
    target = "/proc/self/fd/{}".format(fd)
    try:
        if flags & linux.MS_REMOUNT:
            # Keep nosuid, nodev... of what is below: a remount must not clear them.
            flags |= os.statvfs(target).f_flag & linux.MS_LOCKED
        linux.mount(source, target, fstype, flags, data)
    except OSError as exc:
        raise RunnerError("mounts", "cannot {} {}: {}".format(
            "remount" if flags & linux.MS_REMOUNT or not source else "mount {} on".format(
                source), dest, exc.strerror)) from exc


def _mount_at(root: int, dest: str, directory: bool, source: "Optional[str]",
              fstype: "Optional[str]", flags: int, data: "Optional[str]" = None,
              create: bool = True) -> None:
    """mount(2) onto ``dest`` in the rootfs, opened anew (so onto the mount on top)."""
    fd = _open_target(root, dest, directory, create)
    if fd >= 0:
        try:
            _mount_fd(fd, dest, source, fstype, flags, data)
        finally:
            os.close(fd)


def _mount_one(root: int, mount: "Dict[str, Any]", plan: "Plan") -> None:
    dest, flags = mount["destination"], mount["flags"]
    if not mount["bind"]:
        _mount_at(root, dest, True, mount["source"], mount["type"], flags, mount["data"])
        if mount["propagation"]:
            _mount_at(root, dest, True, None, None, mount["propagation"], create=False)
        return
    source = open_bind_source(plan, mount)
    try:
        directory = os.fstat(source).st_mode & 0o170000 == 0o040000
        _mount_at(root, dest, directory, "/proc/self/fd/{}".format(source), None,
                  linux.MS_BIND | (linux.MS_REC if mount["recursive"] else 0))
    finally:
        os.close(source)
    extra = flags & ~(linux.MS_BIND | linux.MS_REC | linux.MS_REMOUNT | linux.MS_RDONLY)
    if mount["remount_readonly"] or extra:
        # Options of a bind mount only take effect through a remount.
        _mount_at(root, dest, directory, None, None, linux.MS_BIND | linux.MS_REMOUNT
                  | extra | (linux.MS_RDONLY if mount["remount_readonly"] else 0),
                  create=False)
    if mount["propagation"]:
        _mount_at(root, dest, directory, None, None, mount["propagation"], create=False)
    attr_set, attr_clr = mount.get("setattr") or (0, 0)
    if attr_set or attr_clr:
        _setattr_at(root, dest, directory, attr_set, attr_clr)


def _setattr_at(root: int, dest: str, directory: bool, attr_set: int, attr_clr: int) -> None:
    """mount_setattr(2) on ``dest`` and every mount below it (rro and the like)."""
    fd = _open_target(root, dest, directory, create=False)
    if fd < 0:
        return
    try:
        linux.mount_setattr(fd, attr_set, attr_clr)
    except OSError as exc:
        raise RunnerError("mounts", "cannot apply the recursive options (rro...) to {}: "
                          "{}".format(dest, exc.strerror)) from exc
    finally:
        os.close(fd)


def check_bind_sources(plan: "Plan") -> None:
    """Open every bind source as a spawn will (and close it): a refusal comes at start,
    as BadConfigError naming the field, not as a crash loop."""
    for mount in plan["mounts"]:
        if mount["bind"]:
            try:
                os.close(open_bind_source(plan, mount))
            except RunnerError as exc:
                from vzslave.errors import BadConfigError
                field = mount.get("field", "mounts") + ".source"
                raise BadConfigError("{}: {}".format(field, exc.message),
                                     {"field": field}) from exc


def open_bind_source(plan: "Plan", mount: "Dict[str, Any]") -> int:
    """An O_PATH fd of a bind mount's source, opened so the image cannot redirect it.

    A source inside the bundle (``in_bundle``, relative to it) is walked component by
    component with O_NOFOLLOW: the image's files are untrusted, and a symlink among
    them is refused. A node path is the operator's: the node's own symlinks are
    followed, but where it ends must not be inside vz's bundle store (``plan["store"]``;
    the bundle itself without one), whose files are the images'. Raises RunnerError.
    """
    what = "bind source"
    relative = mount.get("in_bundle")
    if relative is not None:
        bundle = os.open(plan["bundle"], _DIR)
        try:
            parent, name = _open_parent(bundle, relative, what, create=False)
        finally:
            os.close(bundle)
        if parent < 0:
            raise RunnerError("mounts", "{} {} is missing from the bundle".format(
                what, relative))
        try:
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except FileNotFoundError:
            raise RunnerError("mounts", "{} {} is missing from the bundle".format(
                what, relative)) from None
        finally:
            os.close(parent)
        if os.fstat(fd).st_mode & 0o170000 == 0o120000:
            os.close(fd)
            raise RunnerError("mounts", "{} {} is a symlink in the image; refusing".format(
                what, relative))
        return fd
    source = mount["source"]
    try:
        fd = os.open(source, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise RunnerError("mounts", "cannot open {} {}: {}".format(
            what, source, exc.strerror)) from exc
    real = os.readlink("/proc/self/fd/{}".format(fd))
    # vzslave's containers: every bundle tree and app release; runch's: its bundle.
    stores = plan.get("store") or plan["bundle"]
    for store in [stores] if isinstance(stores, str) else stores:
        if real == store or real.startswith(store.rstrip("/") + "/"):
            os.close(fd)
            raise RunnerError("mounts", "{} {} leads into vz's bundle store ({}), whose "
                              "files are the images'; name a path relative to the bundle "
                              "instead".format(what, source, real))
    return fd


def make_mount_point(rootfs: str, dest: str, what: str) -> None:
    """Create directory ``dest`` in ``rootfs`` (walked without following a symlink) for
    a mount to land on; RunnerError if it goes through a symlink or is not a directory."""
    root = os.open(rootfs, _DIR)
    try:
        fd = _open_target(root, dest, directory=True, create=True, what=what)
    finally:
        os.close(root)
    os.close(fd)


def _make_device(root: int, device: "Dict[str, Any]") -> None:
    kind = {"b": 0o060000, "p": 0o010000}.get(device["type"], 0o020000)  # S_IFBLK... S_IFCHR
    parent, name = _open_parent(root, device["path"], "device")
    try:
        try:
            os.mknod(name, device["mode"] | kind,
                     os.makedev(device["major"], device["minor"]), dir_fd=parent)
        except FileExistsError:
            return
        except PermissionError:
            # Unprivileged guests (LXC) may not mknod: bind the host's node instead.
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, device["mode"] & 0o777, dir_fd=parent))
            _mount_at(root, device["path"], False, device["path"], None, linux.MS_BIND,
                      create=False)
            return
        os.chown(name, device["uid"], device["gid"], dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


def _kind(root: int, path: str, what: str) -> str:
    """"dir", "file" or "" (absent) for ``path`` in the rootfs; refuses symlinks."""
    parent, name = _open_parent(root, path, what, create=False)
    if parent < 0:
        return ""
    try:
        mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode & 0o170000
    except FileNotFoundError:
        return ""
    finally:
        os.close(parent)
    if mode == 0o120000:
        raise RunnerError("mounts", "{} {} is a symlink in the image; refusing".format(
            what, path))
    return "dir" if mode == 0o040000 else "file"


def _mask(root: int, path: str) -> None:
    """Hide ``path``: a read-only tmpfs over a directory, /dev/null over anything else."""
    kind = _kind(root, path, "masked path")
    if kind == "dir":
        _mount_at(root, path, True, "tmpfs", "tmpfs", linux.MS_RDONLY, create=False)
    elif kind:
        _mount_at(root, path, False, "/dev/null", None, linux.MS_BIND, create=False)


def _make_readonly(root: int, path: str, rootfs: str) -> None:
    """Bind ``path`` onto itself and remount it read-only, unless it is read-only now."""
    if path == "/":
        def opener() -> int:
            return os.open(rootfs, _DIR)  # by path: onto the mount on top
    else:
        kind = _kind(root, path, "read-only path")
        if not kind:
            return

        def opener() -> int:
            return _open_target(root, path, kind == "dir", False, "read-only path")
    fd = opener()
    try:
        if os.statvfs("/proc/self/fd/{}".format(fd)).f_flag & linux.MS_RDONLY:
            return
        _mount_fd(fd, path, "/proc/self/fd/{}".format(fd), None, linux.MS_BIND | linux.MS_REC)
    finally:
        os.close(fd)
    fd = opener()
    try:
        _mount_fd(fd, path, None, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)
    finally:
        os.close(fd)
