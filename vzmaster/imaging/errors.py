"""The one error of building images: what went wrong, in words the user can act on.

Building happens on the user's machine, not on a node, so it has no wire error code;
the CLI prints ``message`` and exits 1. Every module of ``vzmaster.imaging`` raises only
this, turning OSError, tarfile and ELF errors into it where they happen, so a caller
catches one thing. It hangs under vz's one root, ``Error`` (vzmaster/errors.py draws
the tree).
"""

from vzslave.errors import Error


class BuildError(Error):
    """A build or inspect failed; ``message`` says what and, where it can, what to do."""
