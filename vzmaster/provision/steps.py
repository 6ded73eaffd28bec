"""What each step of a node command did: the lines ``node add`` and ``node remove`` print."""

from __future__ import annotations

from typing import NamedTuple


class Step(NamedTuple):
    """One step's outcome."""

    what: str
    changed: bool
    detail: str = ""
