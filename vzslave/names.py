"""The one gate for the names of images and bundles, checked before any path join."""

import re

from vzslave.errors import BadNameError

MAX_NAME = 64

# A leading letter or digit keeps names clear of options ("-x") and of the dot
# entries the stores keep for themselves (".blobs", ".trees", ".partial").
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*\Z")


def validate_name(kind: str, name: object) -> str:
    """Return ``name`` if it may name an image or bundle; else raise BadNameError.

    ``kind`` ("image", "bundle") only words the message. Names are 1-64 characters
    of letters, digits and ``_ . + -``, starting with a letter or digit: safe as a
    file name, in an inittab line and in a shell-free argv.
    """
    if not isinstance(name, str):
        raise BadNameError("{} name must be a string, not {}".format(kind, type(name).__name__),
                           {"kind": kind})
    if not 0 < len(name) <= MAX_NAME:
        raise BadNameError("{} name must be 1 to {} characters long: {!r}".format(
            kind, MAX_NAME, name[:MAX_NAME + 8]), {"kind": kind})
    if not _NAME.match(name):
        raise BadNameError(
            "bad {} name {!r}: use letters, digits and _ . + - and start with a letter "
            "or digit".format(kind, name), {"kind": kind})
    return name
