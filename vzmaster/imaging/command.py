"""The ``vzmaster build`` and ``vzmaster inspect`` subcommands: this machine, no HOST.

They take the CLI's one path (vzmaster/cli.py) as local commands: no node is
connected; a BuildError is printed as ``vzmaster: MESSAGE`` with exit 1.
"""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING, Any

from vzmaster.output import Call, Shown, View

if TYPE_CHECKING:
    from vzmaster.imaging.builder import BuildResult
    from vzmaster.imaging.pack import ImageSummary


def cmd_build(call: Call) -> Shown:
    """Build an image: an OCI bundle from programs, a traced run, a spec or a root."""
    # Imported here: pyelftools and zstandard would slow every other vzmaster command.
    from vzmaster.imaging.builder import Recipe, build_image

    args = call.args
    recipe = Recipe(
        args=args.args, ldd=args.ldd, strace=shlex.split(args.strace) if args.strace else (),
        strace_for=args.strace_for,
        spec=args.spec, spec_out=args.spec_out, from_root=args.from_root, add=args.add,
        exclude=args.exclude, library_path=args.library_path, env=args.env, cwd=args.cwd,
        user=args.user, readonly=args.readonly, binds=args.bind, tmpfs=args.tmpfs,
        rlimits=args.rlimit, cap_add=args.cap_add, cap_drop=args.cap_drop,
        node_dns=args.node_dns, seccomp=args.seccomp)
    return Shown([build_view(build_image(recipe, args.output))])


def cmd_inspect(call: Call) -> Shown:
    """Show an image's config summary, file count, size and sha256."""
    from vzmaster.imaging.pack import inspect_image

    return Shown([summary_view(inspect_image(call.args.image))])


def build_view(result: BuildResult) -> View:
    """A build's result: the image made, and how much of its packages it holds."""
    from vzmaster.imaging.pack import human_size

    image = result.image
    lines = ["built {}: {} files, {} unpacked, {} packed, sha256 {}".format(
        image.path, image.files, human_size(image.content_bytes), human_size(image.size),
        image.sha256)]
    if result.packages:
        total = sum(result.packages.values())
        lines.append("from packages {} ({} installed): the image holds {:.1%} of that".format(
            ", ".join(sorted(result.packages)), human_size(total),
            image.content_bytes / total))
    fields = {"image": image._asdict(), "copied": result.copied, "traced": result.traced,
              "packages": result.packages}
    return View(fields, {}, "\n".join(lines))


def summary_view(summary: ImageSummary) -> View:
    """What inspect found in an image: labelled lines."""
    from vzmaster.imaging.pack import render_summary

    return View(summary._asdict(), {}, render_summary(summary))


def add_commands(commands: Any) -> None:
    """Add ``build`` and ``inspect`` to the ``vzmaster`` subcommand parsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON")
    common.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")

    build = commands.add_parser(
        "build", parents=[common], help=cmd_build.__doc__, description=cmd_build.__doc__,
        usage="vzmaster build (--ldd PROG | --strace CMD | --spec FILE | --from DIR|TARBALL"
              " | --add SRC[:DEST])... [options] -o IMAGE -- ARGS...")
    build.set_defaults(run=cmd_build, on_node=False)
    sources = build.add_argument_group("what goes in the rootfs (any mix)")
    sources.add_argument("--ldd", action="append", default=[], metavar="PROG",
                         help="an ELF program, its loader and libraries (repeatable)")
    sources.add_argument("--strace", metavar="CMD",
                         help="run CMD under strace -f; every file it opened or executed")
    sources.add_argument("--strace-for", type=float, metavar="SECONDS",
                         help="CMD is a server: trace it this long (use it meanwhile), "
                              "then stop it")
    sources.add_argument("--spec-out", metavar="FILE",
                         help="write the traced files to FILE, one path per line")
    sources.add_argument("--spec", metavar="FILE", help="the paths listed in FILE")
    sources.add_argument("--from", dest="from_root", metavar="DIR|TARBALL",
                         help="a root directory or a rootfs tarball (docker export)")
    sources.add_argument("--add", action="append", default=[], metavar="SRC[:DEST]",
                         help="a file or directory of this machine, at DEST (default: SRC)")
    sources.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                         help="leave out image paths matching GLOB, with what is under them")
    sources.add_argument("--library-path", action="append", default=[], metavar="DIR",
                         help="search DIR for libraries first, as LD_LIBRARY_PATH")
    config = build.add_argument_group("config.json")
    config.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    config.add_argument("--cwd", default="/", metavar="DIR", help="(default: /)")
    config.add_argument("--user", metavar="USER[:GROUP]",
                        help="names (looked up in the image's /etc/passwd, else this "
                             "machine's) or numbers (default: root)")
    config.add_argument("--readonly", action="store_true", help="mount the rootfs read-only")
    config.add_argument("--bind", action="append", default=[], metavar="NODE_PATH:DEST[:ro]",
                        help="bind a path of the node into the container")
    config.add_argument("--tmpfs", action="append", default=[], metavar="DEST[:SIZE]")
    config.add_argument("--rlimit", action="append", default=[], metavar="NAME=SOFT[:HARD]",
                        help="e.g. nofile=4096 (a number or 'unlimited')")
    config.add_argument("--cap-add", action="append", default=[], metavar="CAP")
    config.add_argument("--cap-drop", action="append", default=[], metavar="CAP|ALL")
    config.add_argument("--no-node-dns", dest="node_dns", action="store_false",
                        help="do not bind the node's /etc/resolv.conf and /etc/hosts")
    config.add_argument("--seccomp", default="default", metavar="default|unconfined|FILE",
                        help="the syscall filter: default (deny mount, unshare, keyctl, "
                             "bpf, ptrace... as Docker's profile does), unconfined (none), "
                             "or FILE, a JSON file holding a linux.seccomp object")
    build.add_argument("-o", "--output", required=True, metavar="IMAGE",
                       help="NAME.tar.zst or NAME.txz")
    build.add_argument("args", nargs="+", metavar="ARGS",
                       help="after --: the app's command line (process.args)")

    inspect = commands.add_parser("inspect", parents=[common], help=cmd_inspect.__doc__,
                                  description=cmd_inspect.__doc__)
    inspect.add_argument("image", metavar="IMAGE")
    inspect.set_defaults(run=cmd_inspect, on_node=False)
