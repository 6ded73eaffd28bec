"""Which Debian packages the copied files came from, and their installed sizes.

Only for the report "the image is N bytes; the packages it came from are M bytes
installed". A machine without dpkg, or files no package owns, give a smaller or
empty answer, never an error: the build does not depend on it.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Dict, Iterable, List, Set

# dpkg records merged-/usr files under their pre-merge names (/lib/x86_64-linux-gnu/...)
# while copies are made from their real place (/usr/lib/...): ask under both names.
_MERGED = ("/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/")


def _names(path: str) -> List[str]:
    names = [path]
    if path.startswith("/usr/") and path[4:].startswith(_MERGED):
        names.append(path[4:])
    return names


def _query(argv: List[str]) -> str:
    # dpkg-query exits 1 when some pattern matches nothing; what it found is still right.
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          universal_newlines=True, check=False)
    return done.stdout


def source_packages(paths: Iterable[str]) -> Dict[str, int]:
    """{package: installed size in bytes} of the packages owning ``paths`` (this machine)."""
    dpkg_query = shutil.which("dpkg-query")
    names = sorted({name for path in paths for name in _names(path)})
    if dpkg_query is None or not names:
        return {}
    owners: Set[str] = set()
    for line in _query([dpkg_query, "--search", "--", *names]).splitlines():
        if line.startswith("diversion ") or ": " not in line:
            continue
        owners.update(name.strip() for name in line.split(": ", 1)[0].split(","))
    if not owners:
        return {}
    sizes: Dict[str, int] = {}
    for line in _query([dpkg_query, "--show", "--showformat",
                        "${Package}\t${Installed-Size}\n", *sorted(owners)]).splitlines():
        package, _, size = line.partition("\t")
        if size.isdigit():  # Installed-Size is in KiB
            sizes[package] = int(size) * 1024
    return sizes
