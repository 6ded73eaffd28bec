"""The image each app deploys, on this machine: a file named in vz.yml, or one built from
its recipe when the recipe's inputs changed.

A build goes to ``.vz/build/APP.tar.zst`` beside vz.yml, with ``APP.json`` recording the
recipe and every file of this machine the build copied (size, mtime, inode). The next
deploy rebuilds only when the recipe or one of those files changed; packing is
reproducible, so a rebuild of unchanged inputs gives the same bytes anyway, and the node
sees no change. On a node, an app's image is named after its content
(``APP-SHA12.tar.zst``): a new build never overwrites the image a release still uses.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, NamedTuple, Sequence

from vzmaster.digests import DigestCache
from vzmaster.imaging.builder import Recipe, build_image
from vzslave.names import validate_name

BUILD_DIR = os.path.join(".vz", "build")
_SUFFIXES = (".tar.zst", ".tar.gz", ".tar.xz", ".tgz", ".txz", ".tzst", ".tar")


class LocalImage(NamedTuple):
    """An app's image as this machine has it."""

    app: str
    path: str
    sha256: str
    size: int
    name: str  # on the nodes: APP-SHA12 plus the file's suffix
    built: bool  # made by this call


def node_image_name(app: str, path: str, sha256: str) -> str:
    """The image's name on a node: the app and the first 12 hex digits of its sha256."""
    lower = path.lower()
    suffix = next((s for s in _SUFFIXES if lower.endswith(s)), "")
    return validate_name("image", "{}-{}{}".format(app, sha256[:12], suffix))


def file_image(app: str, path: str, digests: DigestCache) -> LocalImage:
    """The image file vz.yml names for ``app``, hashed (the cache knows unchanged files)."""
    with open(path, "rb") as source:
        st = os.fstat(source.fileno())
        digest = digests.lookup(path, st)
        if digest is None:
            hasher = hashlib.sha256()
            for block in iter(lambda: source.read(1 << 20), b""):
                hasher.update(block)
            digest = hasher.hexdigest()
            digests.store(path, st, digest)
    return LocalImage(app, path, digest, st.st_size, node_image_name(app, path, digest), False)


def build_paths(directory: str, app: str) -> tuple[str, str]:
    """Where ``app``'s build goes: (image file, its record)."""
    base = os.path.join(directory, BUILD_DIR, app)
    return base + ".tar.zst", base + ".json"


def cached_build(directory: str, app: str, recipe: Recipe) -> LocalImage | None:
    """The last build of ``app`` if its recipe and every file it copied are unchanged."""
    output, record_path = build_paths(directory, app)
    try:
        with open(record_path, encoding="utf-8") as source:
            record = json.load(source)
        st = os.stat(output)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("inputs") != _inputs(
            recipe, record.get("copied") or []) or record.get("size") != st.st_size:
        return None
    return LocalImage(app, output, str(record["sha256"]), st.st_size,
                      node_image_name(app, output, str(record["sha256"])), False)


def build(directory: str, app: str, recipe: Recipe) -> LocalImage:
    """Build ``app``'s image from ``recipe`` and record its inputs (BuildError if the
    build fails; the last good build stays in place)."""
    output, record_path = build_paths(directory, app)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    result = build_image(recipe, output)
    copied = sorted(set(result.copied))
    record = {"app": app, "sha256": result.image.sha256, "size": result.image.size,
              "copied": copied, "inputs": _inputs(recipe, copied)}
    staging = record_path + ".tmp"
    with open(staging, "w", encoding="utf-8") as sink:
        json.dump(record, sink, indent=1, sort_keys=True)
    os.replace(staging, record_path)
    return LocalImage(app, output, result.image.sha256, result.image.size,
                      node_image_name(app, output, result.image.sha256), True)


def _inputs(recipe: Recipe, copied: Sequence[str]) -> str:
    """A digest of the recipe and of the identity of every file the build copied."""
    hasher = hashlib.sha256(json.dumps(_jsonable(recipe._asdict()), sort_keys=True).encode())
    for path in copied:
        try:
            st = os.stat(path)
            hasher.update("{}\0{}\0{}\0{}\n".format(
                path, st.st_size, st.st_mtime_ns, st.st_ino).encode("utf-8", "surrogateescape"))
        except OSError:
            hasher.update("{}\0gone\n".format(path).encode("utf-8", "surrogateescape"))
    return hasher.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value
