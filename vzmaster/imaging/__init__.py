"""Making images on this machine: ``vzmaster build`` and ``vzmaster inspect``.

    from vzmaster.imaging import Recipe, build_image, inspect_image
    result = build_image(Recipe(args=["/usr/sbin/mini_httpd", "-D"],
                                ldd=["/usr/sbin/mini_httpd"]), "web.tar.zst")

The modules, in the order a build uses them: ``elf`` (ldd-trace) and ``trace``
(strace-trace, spec files) find the files; ``rootfs`` stages them with their link
chains; ``ociconfig`` makes config.json and checks it with the node's reader;
``pack`` writes the reproducible image; ``builder`` runs the steps; ``command`` is
the CLI. Every failure is a ``BuildError``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vzmaster.imaging.builder import BuildResult, Recipe, build_image
    from vzmaster.imaging.errors import BuildError
    from vzmaster.imaging.pack import ImageSummary, PackResult, inspect_image, render_summary

__all__ = ["BuildError", "BuildResult", "ImageSummary", "PackResult", "Recipe",
           "build_image", "inspect_image", "render_summary"]

# Each public name's module, imported when the name is first used: pyelftools and
# zstandard cost ~70 ms, which every other vzmaster command (they import the build
# and inspect subcommands' parser from here) would pay.
_HOMES = {"BuildError": "errors", "BuildResult": "builder", "Recipe": "builder",
          "build_image": "builder", "ImageSummary": "pack", "PackResult": "pack",
          "inspect_image": "pack", "render_summary": "pack"}


def __getattr__(name: str) -> Any:
    """The public name ``name``, from its module."""
    if name not in _HOMES:
        raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
    return getattr(importlib.import_module("vzmaster.imaging." + _HOMES[name]), name)
