"""The fleet: every node and app of one vz.yml at once (``vzmaster plan / deploy / ps``).

    from vzmaster.fleet import Fleet, load

    with Fleet(load()) as fleet:        # vz.yml here or in a parent, or $VZ_CONFIG
        print(fleet.plan())
        report = fleet.deploy()

Modules: ``config`` (vz.yml read and checked), ``inventory`` (an Ansible inventory as
nodes), ``placement`` (where replicas go: pure), ``plan`` (desired against actual:
pure), ``images`` (the image each app deploys, built when its inputs changed),
``fleet`` (the sessions and the commands), ``events`` (progress). The names below load
their module on first use, so ``vzmaster`` commands that never touch a fleet do not
pay for pydantic and PyYAML.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vzmaster.fleet.config import AppSpec, ConfigError, FleetConfig, NodeSpec, load, load_config
    from vzmaster.fleet.events import Events
    from vzmaster.fleet.fleet import Fleet, FleetError, Outcome, Replica, Report
    from vzmaster.fleet.plan import Plan, Step

__all__ = ["AppSpec", "ConfigError", "Events", "Fleet", "FleetConfig", "FleetError",
           "NodeSpec", "Outcome", "Plan", "Replica", "Report", "Step", "load", "load_config"]

_HOMES = {"AppSpec": "config", "ConfigError": "config", "FleetConfig": "config",
          "NodeSpec": "config", "load": "config", "load_config": "config",
          "Events": "events", "Fleet": "fleet", "FleetError": "fleet", "Outcome": "fleet",
          "Replica": "fleet", "Report": "fleet", "Plan": "plan", "Step": "plan"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
    return getattr(importlib.import_module("vzmaster.fleet." + _HOMES[name]), name)
