"""Deprecated: ``vzmaster.imaging`` is the image-making package now (one release more).

``from vzmaster.build import Recipe, build_image`` keeps working until the next release;
import from ``vzmaster.imaging`` instead. The package was renamed because tools treat a
directory named ``build/`` as output (a .gitignore once swallowed it whole).
"""

import warnings

from vzmaster.imaging import (
    BuildError,
    BuildResult,
    ImageSummary,
    PackResult,
    Recipe,
    build_image,
    inspect_image,
    render_summary,
)

warnings.warn("vzmaster.build is renamed vzmaster.imaging; the old name goes in the next "
              "release", DeprecationWarning, stacklevel=2)

__all__ = ["BuildError", "BuildResult", "ImageSummary", "PackResult", "Recipe",
           "build_image", "inspect_image", "render_summary"]
