"""An Ansible inventory as vz nodes, read through ansible-core's own API.

A fleet already described for Ansible need not be described twice: vz.yml's
``inventory: hosts.ini`` reads it with ``InventoryManager`` and ``VariableManager``
(so INI and YAML files, ``[group:children]``, ``[group:vars]`` and the group_vars/ and
host_vars/ directories beside the file mean what they mean to Ansible), and turns each
host into the fields of a vz.yml ``nodes:`` entry:

    ansible_host                   host (default: the inventory name)
    ansible_port                   port
    ansible_user                   user
    ansible_ssh_private_key_file   key (~ expanded, relative to the inventory's directory)
    vz_firewall                    firewall (an Ansible boolean: true, yes, on, 1, ...)
    its groups                     groups (without Ansible's implicit all and ungrouped)

Only the ``yaml`` and ``ini`` inventory plugins are enabled while it reads: an
executable file is never run as an inventory script, and no dynamic-inventory plugin
reaches out to a cloud API while vz.yml loads. Values are taken as written: a Jinja
template (``{{ ... }}``) is refused, not expanded.

ansible-core is an optional extra (``vz[ansible]``), imported here only when an
inventory is read: its import costs ~0.2 s (measured with ansible-core 2.19 on
Python 3.11, 2 cores: 0.20-0.24 s to import, ~15 ms to read a small INI file; 2.14,
the oldest supported, is alike). It prints its warnings to stdout and stderr; they
are caught while it runs and go to the ``vzmaster.fleet`` logger (debug), or into
the error when the file could not be read. It also wants a scratch directory, by
default ~/.ansible/tmp, made on import (2.14) or first use (2.19): pointed at the
system's temporary directory instead, so a HOME that is not writable does not matter
and nothing is left in it. Both swap process-wide state for the duration of a read
(``sys.stdout``, ``sys.stderr``, ``$ANSIBLE_LOCAL_TEMP``): read inventories from one
thread at a time.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from typing import Any, Iterator

from vzslave.errors import Error

log = logging.getLogger("vzmaster.fleet")

HOST_VARS = {"ansible_host": "host", "ansible_port": "port", "ansible_user": "user",
             "ansible_ssh_private_key_file": "key", "vz_firewall": "firewall"}
_PLUGINS = ["yaml", "ini"]  # static files only: no scripts, no cloud plugins
_IMPLICIT_GROUPS = ("all", "ungrouped")


class InventoryError(Error):
    """An Ansible inventory could not be read, or a host's variables make no node."""


def read_inventory(path: str) -> dict[str, dict[str, Any]]:
    """Host name -> its node fields (only those the inventory sets), in inventory order.

    Raises InventoryError if ansible-core is missing, the file cannot be read, or a
    variable vz uses has a value that makes no sense for it.
    """
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise InventoryError(f"{path}: no such file")
    with _quiet() as said, _local_temp():
        try:
            hosts = _read(path)
        except ImportError:
            raise InventoryError("reading an Ansible inventory needs ansible-core: "
                                 "pip install 'vz[ansible]'") from None
        except InventoryError:
            raise
        except Exception as exc:  # AnsibleError and whatever a plugin let through
            detail = _first_complaint(said.getvalue()) or str(exc)
            raise InventoryError(f"ansible-core could not read it: {detail}") from exc
    for line in said.getvalue().splitlines():
        log.debug("ansible: %s", line)
    return hosts


def _read(path: str) -> dict[str, dict[str, Any]]:
    import ansible  # noqa: F401  # first the package: a blocked import fails here
    from ansible import constants
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    saved = constants.INVENTORY_ENABLED, constants.INVENTORY_ANY_UNPARSED_IS_FAILED
    # Ansible's own settings (ANSIBLE_INVENTORY_ENABLED, ..._ANY_UNPARSED_IS_FAILED),
    # patched as the module attributes every ansible-core since 2.8 reads while parsing:
    # the environment variables count only before ansible-core's first import.
    constants.INVENTORY_ENABLED = _PLUGINS
    constants.INVENTORY_ANY_UNPARSED_IS_FAILED = True  # else a bad file is only a warning
    try:
        loader = DataLoader()
        inventory = InventoryManager(loader=loader, sources=[path])
        variables = VariableManager(loader=loader, inventory=inventory)
        found: dict[str, dict[str, Any]] = {}
        for name, host in inventory.hosts.items():
            found[str(name)] = _node_fields(
                str(name), variables.get_vars(host=host, include_hostvars=False),
                os.path.dirname(path))
        return found
    finally:
        constants.INVENTORY_ENABLED, constants.INVENTORY_ANY_UNPARSED_IS_FAILED = saved


def _node_fields(name: str, values: dict[str, Any], directory: str) -> dict[str, Any]:
    """One host's variables -> the vz.yml node fields they set."""
    fields: dict[str, Any] = {"host": name}
    for var, field in HOST_VARS.items():
        value = values.get(var)
        if value is None:
            continue
        if isinstance(value, str) and "{{" in value:
            raise InventoryError(f"host {name}: {var} is a Jinja template ({value}): vz "
                                 "takes inventory values as written; give the value itself")
        fields[field] = _convert(name, var, value, directory)
    groups = [str(group) for group in values.get("group_names", ())
              if group not in _IMPLICIT_GROUPS]
    if groups:
        fields["groups"] = groups
    return fields


def _convert(name: str, var: str, value: Any, directory: str) -> Any:
    """An Ansible variable's value as the node field wants it (plain str, int, bool)."""
    if var == "vz_firewall":
        from ansible.module_utils.parsing.convert_bool import boolean
        try:
            return bool(boolean(value, strict=True))
        except TypeError:
            raise InventoryError(f"host {name}: vz_firewall must be true or false, not "
                                 f"{value!r}") from None
    if var == "ansible_port":
        text = str(value).strip()
        if isinstance(value, bool) or not text.isdigit() or not 0 < int(text) < 65536:
            raise InventoryError(f"host {name}: ansible_port must be a port from 1 to 65535, "
                                 f"not {value!r}")
        return int(text)
    if not isinstance(value, str) or not value:
        raise InventoryError(f"host {name}: {var} must be a non-empty string, not {value!r}")
    if var == "ansible_ssh_private_key_file":
        return os.path.normpath(os.path.join(directory, os.path.expanduser(value)))
    return str(value)  # ansible-core 2.19 hands out tagged str subclasses


@contextlib.contextmanager
def _local_temp() -> Iterator[None]:
    """Point ansible-core's scratch directory at the system's temporary directory.

    ansible-core removes the ``ansible-local-*`` directory it makes there at exit. A
    user's own ANSIBLE_LOCAL_TEMP is kept.
    """
    if "ANSIBLE_LOCAL_TEMP" in os.environ:
        yield
        return
    os.environ["ANSIBLE_LOCAL_TEMP"] = tempfile.gettempdir()
    try:
        yield
    finally:
        os.environ.pop("ANSIBLE_LOCAL_TEMP", None)


@contextlib.contextmanager
def _quiet() -> Iterator[io.StringIO]:
    """Catch what ansible-core prints (warnings, deprecations) instead of showing it."""
    said = io.StringIO()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield said


def _first_complaint(text: str) -> str:
    """The reason in what ansible-core printed about a failed parse, if it gave one."""
    lines = [line.replace("[WARNING]:", "").replace("[ERROR]:", "").strip(" *")
             for line in text.splitlines()]
    for index, line in enumerate(lines):
        if "Failed to parse" in line:
            if line.endswith(":") and index + 1 < len(lines):  # 2.14 wraps the reason
                line += " " + lines[index + 1]
            return line
    return ""
