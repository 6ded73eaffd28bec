"""A node written into (or taken out of) vz.yml with ruamel.yaml's round trip: the file's
comments, order and layout stay as the user wrote them; only the node's entry changes.
Written atomically (a temporary file beside it, then a rename)."""

from __future__ import annotations

import io
import os
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from vzmaster.fleet import schema
from vzmaster.provision.remote import ProvisionError


def _yaml() -> YAML:
    yaml = YAML()  # round trip
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _load(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as source:
            data = _yaml().load(source)
    except FileNotFoundError:
        data = None
    except Exception as exc:  # noqa: BLE001 (ruamel's errors have no common base)
        raise ProvisionError("{}: cannot read it to add the node: {}".format(path, exc)) from exc
    return CommentedMap() if data is None else data


def _dump(path: str, data: Any) -> None:
    buffer = io.StringIO()
    _yaml().dump(data, buffer)
    staging = "{}.vz-new.{}".format(path, os.getpid())
    with open(staging, "w", encoding="utf-8") as sink:
        sink.write(buffer.getvalue())
    os.replace(staging, path)


def read_ssh(path: str) -> dict[str, str]:
    """vz.yml's ``ssh:`` section as written ({} without a file or a section)."""
    data = _load(path)
    ssh = data.get("ssh") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in ssh.items()} if isinstance(ssh, dict) else {}


def check_node(name: str, fields: dict[str, Any]) -> None:
    """ProvisionError, in vz.yml's words, unless ``nodes: {NAME: FIELDS}`` would load: so
    a bad name or port is refused before the node is touched, not after."""
    _, problems = schema.validate(schema.FleetModel, {"nodes": {name: fields}})
    if problems:
        raise ProvisionError("; ".join("{}: {}".format(".".join(map(str, loc)), text)
                                       for loc, text in problems))


def add_node(path: str, name: str, fields: dict[str, Any]) -> bool:
    """Make vz.yml's ``nodes.NAME`` hold ``fields`` (flow style, as the README writes
    nodes), keeping what else the entry has; False if it already did."""
    data = _load(path)
    if not isinstance(data, dict):
        raise ProvisionError("{}: not a mapping at the top; cannot add a node".format(path))
    nodes = data.get("nodes")
    if nodes is None:
        nodes = data["nodes"] = CommentedMap()
    if not isinstance(nodes, dict):
        raise ProvisionError("{}: nodes: is not a mapping; cannot add a node".format(path))
    entry = nodes.get(name)
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in fields.items()):
        return False
    if not isinstance(entry, dict):
        entry = CommentedMap()
        entry.fa.set_flow_style()
        nodes[name] = entry
    for key, value in fields.items():
        entry[key] = value
    _dump(path, data)
    return True


def remove_node(path: str, name: str) -> bool:
    """Take ``nodes.NAME`` out of vz.yml; False if it was not there."""
    data = _load(path)
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, dict) or name not in nodes:
        return False
    del nodes[name]
    _dump(path, data)
    return True
