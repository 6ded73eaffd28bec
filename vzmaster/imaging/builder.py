"""A Recipe -> an image: gather the rootfs, make config.json, check both, pack.

Order matters for "bad input loses nothing": every option is checked before anything
is written; the bundle is staged in a ``.vz-build-*`` directory next to the output
(same filesystem, so packing is a rename away from done) and removed whatever
happens; the image appears only complete, by an atomic rename in ``pack``.

Sources mix and are applied in this order, the first to place a path winning for
links and directories, the last for files: ``from_root`` (a base root), the traced
run, the spec file, the ldd programs, then ``add``. ldd, spec and strace paths are
this machine's.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from vzmaster.imaging import ociconfig, pack
from vzmaster.imaging.elf import needed_files
from vzmaster.imaging.errors import BuildError
from vzmaster.imaging.packages import source_packages
from vzmaster.imaging.rootfs import Rootfs
from vzmaster.imaging.trace import read_spec, trace_command, write_spec


class Recipe(NamedTuple):
    """What to build; the options of ``vzmaster build``, one field each."""

    args: Sequence[str]                  # the app's command line (process.args)
    ldd: Sequence[str] = ()              # ELF programs: + loader + libraries
    strace: Sequence[str] = ()           # a command (argv) to run under strace -f
    strace_for: Optional[float] = None   # a server: trace it this many seconds, then stop it
    spec: Optional[str] = None           # a file listing paths, one per line
    spec_out: Optional[str] = None       # where to write the traced paths
    from_root: Optional[str] = None      # a root directory or a rootfs tarball
    add: Sequence[str] = ()              # SRC[:DEST]
    exclude: Sequence[str] = ()          # globs over image paths
    library_path: Sequence[str] = ()     # searched first for libraries
    env: Sequence[str] = ()
    cwd: str = "/"
    user: Optional[str] = None           # USER[:GROUP], names or numbers; None: root
    readonly: bool = False
    binds: Sequence[str] = ()
    tmpfs: Sequence[str] = ()
    rlimits: Sequence[str] = ()
    cap_add: Sequence[str] = ()
    cap_drop: Sequence[str] = ()
    node_dns: bool = True
    seccomp: str = "default"             # default, unconfined, or a JSON file (linux.seccomp)


class BuildResult(NamedTuple):
    image: pack.PackResult
    copied: List[str]              # files of this machine copied into the rootfs
    traced: List[str]              # what the traced run opened or executed
    packages: Dict[str, int]       # Debian packages of the copied files: installed bytes


def _options(recipe: Recipe) -> ociconfig.Options:
    return ociconfig.Options(
        args=recipe.args, env=recipe.env, cwd=recipe.cwd, readonly=recipe.readonly,
        binds=recipe.binds, tmpfs=recipe.tmpfs, rlimits=recipe.rlimits,
        cap_add=recipe.cap_add, cap_drop=recipe.cap_drop, node_dns=recipe.node_dns,
        seccomp=recipe.seccomp)


def _check(recipe: Recipe, output: str) -> None:
    """Refuse a recipe that cannot work, before anything is run or written."""
    pack.compression_for(output)
    ociconfig.make_config(_options(recipe), ociconfig.User(0, 0))
    if not (recipe.ldd or recipe.strace or recipe.spec or recipe.from_root or recipe.add):
        raise BuildError("nothing to put in the image: give --ldd, --strace, --spec, "
                         "--from or --add")
    if (recipe.spec_out or recipe.strace_for is not None) and not recipe.strace:
        raise BuildError("--spec-out and --strace-for go with --strace: give it too")
    if recipe.strace_for is not None and not recipe.strace_for > 0:
        raise BuildError("--strace-for {}: give the seconds to trace the server, more "
                         "than 0".format(recipe.strace_for))
    if recipe.from_root and not os.path.exists(recipe.from_root):
        raise BuildError("--from {}: no such directory or tarball".format(recipe.from_root))


def build_image(recipe: Recipe, output: str) -> BuildResult:
    """Build the image ``output`` (``.tar.zst`` or ``.txz``) from ``recipe``."""
    _check(recipe, output)
    staging = tempfile.mkdtemp(prefix=".vz-build-", dir=os.path.dirname(output) or ".")
    try:
        rootfs = Rootfs(os.path.join(staging, "rootfs"), exclude=recipe.exclude)
        traced = _gather(recipe, rootfs)
        user = ociconfig.resolve_user(recipe.user, *_tables(rootfs))
        rootfs.add_base(user.passwd, user.group)
        config = ociconfig.make_config(_options(recipe), user)
        _check_program(rootfs, config["process"])
        rootfs.add_directory(recipe.cwd)
        ociconfig.check_with_node_reader(config, staging)
        image = pack.pack_bundle(config, rootfs.path, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(image, rootfs.copied, traced, source_packages(rootfs.copied))


def _gather(recipe: Recipe, rootfs: Rootfs) -> List[str]:
    """Put every source in the rootfs; returns the traced paths."""
    if recipe.from_root:
        if os.path.isdir(recipe.from_root):
            rootfs.add_copy(recipe.from_root, "/")
        else:
            rootfs.add_tarball(recipe.from_root)
    traced: List[str] = []
    if recipe.strace:
        traced = trace_command(recipe.strace, run_for=recipe.strace_for)
        if recipe.spec_out:
            write_spec(traced, recipe.spec_out)
    for path in traced + (read_spec(recipe.spec) if recipe.spec else []):
        rootfs.add_path(path)
    if recipe.ldd:
        for path in needed_files(recipe.ldd, library_path=recipe.library_path):
            rootfs.add_path(path)
    for item in recipe.add:
        source, _, dest = item.partition(":")
        rootfs.add_copy(source, dest or os.path.abspath(source))
    return traced


def _tables(rootfs: Rootfs) -> List[Optional[bytes]]:
    """The passwd and group files users are looked up in: the image's, else this machine's."""
    tables: List[Optional[bytes]] = []
    for name in ("/etc/passwd", "/etc/group"):
        where = rootfs.resolve(name) if rootfs.exists(name) else name
        try:
            with open(where, "rb") as file:
                tables.append(file.read())
        except OSError:
            tables.append(None)
    return tables


def _check_program(rootfs: Rootfs, process: Dict[str, Any]) -> None:
    """Refuse an image whose app program is missing: it could never start."""
    program: str = process["args"][0]
    if "/" in program:  # relative to the working directory, as execve() sees it
        candidates = [os.path.join(process["cwd"], program)]
    else:  # looked up in the app's PATH, as runc and the runner do
        path = next((item[5:] for item in process["env"] if item.startswith("PATH=")), "")
        candidates = [os.path.join(d, program) for d in path.split(":") if d]
    for candidate in candidates:
        where = rootfs.resolve(candidate)
        if os.path.isfile(where) and os.stat(where).st_mode & stat.S_IXUSR:
            return
    raise BuildError("the app's program {} is not in the image: add it with --ldd {} "
                     "(an ELF program) or --add".format(program, program))
