"""What the node's two commands share: vzslave (server.py) and vz-supervisor
(supervisor.py) both take ``--root`` and log to a file under ROOT/log."""

import argparse
import logging
import os
import sys
from typing import Optional

from vzslave.config import DEFAULT_ROOT


def argument_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser for a node command, with its ``--root`` option."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--root", default=DEFAULT_ROOT, help="state root (default: %(default)s)")
    return parser


def log_to_file(logger: logging.Logger, path: str, ident: str,
                rotate_over: Optional[int] = None, echo: bool = False) -> None:
    """Send ``logger``'s records from INFO up to the file at ``path``, as "TIME
    IDENT[PID] LEVEL MESSAGE" lines; with ``echo``, to stderr too.

    With ``rotate_over``, a file already past that many bytes becomes ``path.1`` first
    (one generation). Should the file not open, warnings and errors go to stderr.
    """
    handler: logging.Handler
    if rotate_over is not None:
        try:
            # Rotated at start, not per record: vzslave's sessions are short, several
            # may run at once, and logging.handlers would cost each ~5 ms to import.
            if os.path.getsize(path) > rotate_over:
                os.replace(path, path + ".1")
        except OSError:
            pass
    try:
        handler = logging.FileHandler(path)
    except OSError:
        # Last resort: OpenSSH drops a subsystem's stderr, but a local child's is read.
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s {}[%(process)d] %(levelname)s %(message)s".format(ident)))
    logger.addHandler(handler)
    if echo:
        logger.addHandler(logging.StreamHandler(sys.stderr))
    logger.setLevel(logging.INFO)
