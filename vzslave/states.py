"""The states of a container, named once: what status reports, what the runner records,
what settings.json marks; and ``derive``, which makes the first out of the others.

Three vocabularies, three writers:

    ContainerState  status's ``state``, derived here, never stored
    RunState        the ``state`` line of the run record, written by the runner and its
                    monitor at every spawn: defined with the record in the runner's leaf
                    (vzslave/runio.py), which a spawn loads anyway, and named here
    Wanted, Mark    settings.json (vzslave/settings.py): what was last asked, and the
                    marks of a start or stop under way that a repair finishes

No typing at run time (it costs ~10 ms), no enum (strings are what the files and the
wire carry); nothing but the runner's leaf, which imports only os.
"""

from vzslave.runio import RunState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Optional

__all__ = ["ContainerState", "Mark", "RunState", "Wanted", "derive"]


class ContainerState(object):
    """What ``status`` says of a container."""

    RUNNING = "running"  # the app runs, under the pid its run record names
    STARTING = "starting"  # the entry is in place; init has not spawned the runner yet
    RESTARTING = "restarting"  # between an instance that ended and the next
    CRASH_LOOPING = "crash-looping"  # the runner waits out a backoff, or a step failed
    DISABLED = "disabled"  # wanted running, but the administrator took the entry out
    STOPPED = "stopped"  # not wanted running
    ALL = (RUNNING, STARTING, RESTARTING, CRASH_LOOPING, DISABLED, STOPPED)


class Wanted(object):
    """settings.json's ``wanted``: what the last start or stop asked."""

    RUNNING = "running"
    STOPPED = "stopped"


class Mark(object):
    """settings.json's marks of a change under way, left by a vzslave killed midway."""

    STARTING = "starting"  # set before the entry is written, cleared after the reload
    STOPPING = "stopping"  # set before the entry is removed, cleared once all is ended
    SWITCHING = "switching"  # set before a new release's plan replaces the running one's
    ALL = (STARTING, STOPPING, SWITCHING)


def derive(wanted: "Optional[str]", entry_active: bool, record: "Mapping[str, str]",
           alive: bool) -> str:
    """The ContainerState of a container: ``wanted`` from its settings, whether its
    inittab entry is active, its run record ({} if none), and whether the record's pid
    is the live process the record names."""
    if wanted != Wanted.RUNNING:
        return ContainerState.STOPPED
    if not entry_active:
        return ContainerState.DISABLED
    if not record:
        return ContainerState.STARTING
    state = record.get("state")
    if state in (RunState.WAITING, RunState.FAILED):
        return ContainerState.CRASH_LOOPING
    if alive and state == RunState.RUNNING:
        return ContainerState.RUNNING
    return ContainerState.RESTARTING
