"""The launcher, ROOT/bin/vzrun: what every inittab entry of vz runs, ``vzrun NAME``.

A 5-line script with the interpreter of the vzslave that wrote it (``#!python -IS``)
and vzslave's path baked in, so that it finds this very vzslave (installed anywhere,
in a virtualenv too) and calls ``vzslave.runner.main``. It keeps inittab lines short
(sysvinit drops process fields over 127 characters) and free of shell characters.
Every start writes it again if it differs (another Python, vzslave moved).
"""

import os
import sys
from typing import Optional

from vzslave import fs
from vzslave.config import Layout
from vzslave.errors import InittabError

TEMPLATE = """#!{python} -IS
# Written by vzslave. init runs this for each container: {launcher} NAME
import sys
sys.path.insert(0, {path!r})
from vzslave.runner import main
main(sys.argv[1:], {root!r})
"""
# The directory holding this vzslave package: the launcher puts it first on sys.path.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_SHEBANG = 127  # bytes of a #! line older kernels read


def render_launcher(launcher: str, root: str, python: Optional[str] = None,
                    path: str = PACKAGE_PARENT) -> bytes:
    """The launcher at ``launcher`` for the state root ``root``: ``python`` runs it (this
    interpreter by default), and it imports vzslave from ``path``."""
    return TEMPLATE.format(python=python or sys.executable, launcher=launcher, path=path,
                           root=root).encode()


def install_launcher(layout: Layout, python: Optional[str] = None) -> None:
    """Write ROOT/bin/vzrun for this vzslave, unless it is so already; InittabError if the
    interpreter's path is too long for a #! line."""
    text = render_launcher(layout.launcher, layout.root, python)
    if len(text.split(b"\n", 1)[0]) > MAX_SHEBANG:
        raise InittabError("the Python interpreter's path {} is too long for a #! line "
                           "(127 bytes on older kernels)".format(python or sys.executable))
    try:
        with open(layout.launcher, "rb") as current:
            if current.read() == text:
                return
    except OSError:
        pass
    fs.atomic_write(layout.launcher, text, 0o755)
