"""A container's settings, ROOT/containers/NAME/settings.json: what was asked of it,
where it runs from, and the marks of a start or stop under way.

    wanted          "running" or "stopped": the last start or stop (states.Wanted)
    starting        true while a start is under way (states.Mark), likewise
    stopping        ... a stop: a vzslave killed midway leaves it for the repair
    id              the inittab entry's id (sysvinit), kept until the stop has finished
    tree            the bundle tree the container runs from (never garbage meanwhile)
    source          an app's container: the release bundle it runs (else its bundle's)
    warnings        what the plan could not honour, as status reports it
    runtime, runtime_args, log_max, log_keep, syslog, monitor: the options of the last
                    start that gave them (the others keep their earlier values)

The file is written as ``json.dumps(values, sort_keys=True, indent=1)``, atomically;
keys this version does not know are kept as they are.
"""

import json
import os
from typing import Any, Dict, List, NamedTuple, Optional, Set

from vzslave import fs
from vzslave.states import Mark, Wanted

FILE = "settings.json"
DEFAULT_LOG_MAX = 10 * 1024 * 1024
DEFAULT_LOG_KEEP = 3
OPTIONS = ("runtime", "runtime_args", "log_max", "log_keep", "syslog", "monitor")


class Options(NamedTuple):
    """How a container runs: what its last starts asked, or the defaults."""

    runtime: str  # builtin, runc or crun
    runtime_args: List[str]  # global options for runc or crun
    log_max: int  # bytes a log file may hold
    log_keep: int  # rotated generations kept
    syslog: bool  # the output goes to syslog too
    monitor: bool  # a monitor stays beside the app (the default)


class Settings:
    """The settings of one container, as read from its state directory."""

    def __init__(self, values: Optional[Dict[str, Any]] = None, found: bool = False) -> None:
        self.values: Dict[str, Any] = dict(values or {})
        self.found = found  # a settings file is there (if unreadable, values are {})

    @classmethod
    def load(cls, directory: str) -> "Settings":
        """The settings in ``directory``; empty, and not found, if it has none."""
        path = os.path.join(directory, FILE)
        try:
            with open(path, "rb") as f:
                value = json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError):
            return cls(found=os.path.isfile(path))
        return cls(value if isinstance(value, dict) else {}, found=True)

    def save(self, directory: str) -> None:
        """Replace the settings file in ``directory`` (made if needed) atomically."""
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fs.atomic_write(os.path.join(directory, FILE),
                        json.dumps(self.values, sort_keys=True, indent=1).encode(), 0o600)

    # -- what was asked ---------------------------------------------------------------

    @property
    def wanted(self) -> Optional[str]:
        """Wanted.RUNNING or Wanted.STOPPED; None before the first start."""
        value = self.values.get("wanted")
        return value if isinstance(value, str) else None

    @wanted.setter
    def wanted(self, value: str) -> None:
        self.values["wanted"] = value

    @property
    def wants_running(self) -> bool:
        """True if the last start or stop asked for the container to run."""
        return self.wanted == Wanted.RUNNING

    def ask(self, **options: Any) -> None:
        """Record the OPTIONS given (not None); the others keep their earlier values."""
        for key, value in options.items():
            if key not in OPTIONS:
                raise TypeError("no container option {!r}".format(key))
            if value is not None:
                self.values[key] = value

    @property
    def options(self) -> "Options":
        """The OPTIONS of the last start that gave them, defaults for the others."""
        get = self.values.get
        return Options(str(get("runtime", "builtin")), list(get("runtime_args", [])),
                       int(get("log_max", DEFAULT_LOG_MAX)), int(get("log_keep", DEFAULT_LOG_KEEP)),
                       bool(get("syslog", False)), bool(get("monitor", True)))

    # -- where it runs from -------------------------------------------------------------

    @property
    def entry_id(self) -> str:
        """The inittab entry's id ("" without one: not started, or BusyBox)."""
        return str(self.values.get("id") or "")

    @entry_id.setter
    def entry_id(self, value: str) -> None:
        self.values["id"] = value

    @property
    def tree(self) -> str:
        """The bundle tree a started container runs from; "" when stopped."""
        return str(self.values.get("tree") or "")

    @property
    def source(self) -> str:
        """The release bundle an app's container runs; "" for a bundle's container."""
        return str(self.values.get("source") or "")

    @source.setter
    def source(self, value: str) -> None:
        self.values["source"] = value

    @property
    def warnings(self) -> List[str]:
        """What the plan could not honour, from the last start."""
        return list(self.values.get("warnings") or [])

    def placed(self, tree: str, warnings: List[str]) -> None:
        """Record the tree a start runs from, and its plan's warnings."""
        self.values.update(tree=tree, warnings=warnings)

    def stopped(self) -> None:
        """Forget what a finished stop leaves behind: every mark (a start it rolled back
        included), the entry id, the tree."""
        for key in tuple(Mark.ALL) + ("id", "tree"):
            self.values.pop(key, None)

    # -- the marks of a change under way ------------------------------------------------

    def marked(self, mark: str) -> bool:
        """True if ``mark`` (a Mark) is set."""
        return bool(self.values.get(mark))

    @property
    def under_way(self) -> bool:
        """True if a start or stop was marked and not finished (the repair's work)."""
        return any(self.marked(mark) for mark in Mark.ALL)

    def mark(self, mark: str) -> None:
        """Set ``mark`` before a change: saved, it tells the repair what was under way."""
        self.values[mark] = True

    def unmark(self, mark: str) -> None:
        """Clear ``mark`` once its change has finished."""
        self.values.pop(mark, None)


def trees_in_use(containers: str) -> Set[str]:
    """The bundle trees the containers under ``containers`` (ROOT/containers) run from."""
    return {Settings.load(os.path.join(containers, name)).tree
            for name in fs.visible_names(containers)} - {""}


def ids_in_use(containers: str, but: str) -> Set[str]:
    """The inittab entry ids the containers under ``containers`` hold, ``but``'s aside:
    a container keeps its id until its stop has finished."""
    return {Settings.load(os.path.join(containers, name)).entry_id
            for name in fs.visible_names(containers) if name != but} - {""}
