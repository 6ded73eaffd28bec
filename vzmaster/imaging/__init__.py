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

from vzmaster.imaging.builder import BuildResult, Recipe, build_image
from vzmaster.imaging.errors import BuildError
from vzmaster.imaging.pack import ImageSummary, PackResult, inspect_image, render_summary

__all__ = ["BuildError", "BuildResult", "ImageSummary", "PackResult", "Recipe",
           "build_image", "inspect_image", "render_summary"]
