#!/usr/bin/env python3
"""Building images: ldd-trace against ldd, packing against GNU tar | zstd, image sizes.

- ldd-trace: ``needed_files`` for every dynamic program in /usr/bin and /usr/sbin,
  against running ``ldd`` on each (the reference; it runs the loader), and whether
  both found the same libraries.
- packing: ``pack_bundle`` (zstd -19 with its worker threads; xz -6) of the same staged
  tree against ``tar --sort=name ... | zstd -19 -T<same>`` and ``| xz -6``: seconds, bytes.
- the ldd-trace image of mini_httpd against the installed size of its packages.

Run: python3 bench/build.py [--tree /usr/lib/x86_64-linux-gnu/perl-base]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vzmaster.imaging import Recipe, build_image  # noqa: E402
from vzmaster.imaging.elf import needed_files  # noqa: E402
from vzmaster.imaging.errors import BuildError  # noqa: E402
from vzmaster.imaging.pack import ZSTD_THREADS, human_size, pack_bundle  # noqa: E402

CONFIG = {"ociVersion": "1.0.2", "root": {"path": "rootfs"},
          "process": {"args": ["/bin/true"], "cwd": "/"}}


def dynamic_programs() -> list[str]:
    found = []
    for directory in ("/usr/bin", "/usr/sbin"):
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            with open(path, "rb") as file:
                head = file.read(4)
            if head == b"\x7fELF":
                found.append(path)
    return found


def ldd_libraries(path: str) -> set[str] | None:
    done = subprocess.run(["ldd", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          universal_newlines=True, check=False)
    if done.returncode != 0 or "not a dynamic" in done.stdout:
        return None
    return {os.path.basename(line.split("=>")[-1].split("(")[0].strip())
            for line in done.stdout.splitlines() if "/" in line}


def bench_ldd() -> None:
    programs = dynamic_programs()
    start = time.perf_counter()
    ours = {}
    for path in programs:
        try:
            ours[path] = {os.path.basename(p) for p in needed_files([path])} - {
                os.path.basename(path)}
        except BuildError:
            ours[path] = None
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = {path: ldd_libraries(path) for path in programs}
    ldd_s = time.perf_counter() - start
    compared = [p for p in programs if theirs[p] is not None]
    same = sum(1 for p in compared if ours[p] == theirs[p])
    print("ldd-trace: {} programs in {:.2f} s ({:.1f} ms each); ldd {:.2f} s ({:.1f} ms "
          "each); ratio ours/ldd {:.2f}; same libraries for {}/{} dynamic ones".format(
              len(programs), ours_s, 1000 * ours_s / len(programs), ldd_s,
              1000 * ldd_s / len(programs), ours_s / ldd_s, same, len(compared)))


def tar_pipe(tree: str, compressor: list[str], output: str) -> None:
    with open(output, "wb") as out:
        tar = subprocess.Popen(["tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0",
                                "--numeric-owner", "--format=posix",
                                "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,"
                                "delete=ctime", "-C", tree, "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        subprocess.run(compressor, stdin=tar.stdout, stdout=out, check=True)
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0:
            raise SystemExit("tar failed")


def bench_pack(tree: str, work: str) -> None:
    staged = os.path.join(work, "rootfs")
    shutil.copytree(tree, staged, symlinks=True)
    size = sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(staged)
               for f in fs)
    print("packing {} ({} of files):".format(tree, human_size(size)))
    # The same worker threads as pack_bundle: the comparison is of everything but that.
    zstd = ["zstd", "-19", "-T{}".format(ZSTD_THREADS), "-q", "-c"]
    for suffix, compressor in ((".tar.zst", zstd),
                               (".txz", ["xz", "-6", "-T1", "-c"])):
        start = time.perf_counter()
        ours = pack_bundle(CONFIG, staged, os.path.join(work, "ours" + suffix))
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        reference = os.path.join(work, "ref" + suffix)
        tar_pipe(staged, compressor, reference)
        ref_s = time.perf_counter() - start
        ref_size = os.path.getsize(reference)
        print("  {:8} vz {:.2f} s {} ({:.1f} MB/s); tar | {} {:.2f} s {}; time ratio {:.2f}, "
              "size ratio {:.3f}".format(suffix, ours_s, human_size(ours.size),
                                         size / ours_s / 1e6, compressor[0], ref_s,
                                         human_size(ref_size), ours_s / ref_s,
                                         ours.size / ref_size))


def bench_image(work: str) -> None:
    server = "/usr/sbin/mini_httpd"
    if not os.path.exists(server):
        print("mini_httpd image: skipped (apt install mini-httpd)")
        return
    start = time.perf_counter()
    result = build_image(Recipe(args=[server, "-D"], ldd=[server]),
                         os.path.join(work, "web.tar.zst"))
    took = time.perf_counter() - start
    packages = sum(result.packages.values())
    print("mini_httpd image: built in {:.2f} s; {} files, {} unpacked, {} packed; packages "
          "{} {} installed: image/packages {:.1%}".format(
              took, result.image.files, human_size(result.image.content_bytes),
              human_size(result.image.size), ", ".join(sorted(result.packages)),
              human_size(packages), result.image.content_bytes / packages))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", default="/usr/lib/python3/dist-packages",
                        help="a directory to pack (default: %(default)s)")
    args = parser.parse_args()
    bench_ldd()
    with tempfile.TemporaryDirectory() as work:
        bench_pack(args.tree, work)
        bench_image(work)


if __name__ == "__main__":
    main()
