"""The node's policy: what a container's config.json may ask of this node.

An image's config.json is as trusted as the operator who built it; a node's
administrator can narrow that down in ROOT/policy.json (``Layout.policy``). Without
the file nothing is restricted beyond vz's own defaults. Every key is optional::

    {
      "bind_sources": ["/etc/resolv.conf", "/etc/hosts", "/srv"],
      "devices": ["c 10:200"],
      "capabilities": ["CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_NET_BIND_SERVICE"],
      "join_namespaces": false,
      "require_namespaces": ["pid", "ipc"],
      "runtimes": ["builtin"],
      "runtime_args": ["--cgroup-manager=disabled"],
      "chroot_fallback": false
    }

- ``bind_sources``: node paths a bind mount may take its source from (the path or
  anything below it, after the node's own symlinks are resolved). Sources inside the
  bundle, the image's own files, are always allowed.
- ``devices``: nodes ("c|b|u|p MAJOR:MINOR") that ``linux.devices`` may add beyond the
  ones every container gets (null, zero, full, random, urandom, tty).
- ``capabilities``: every set of ``process.capabilities`` must lie within it; a config
  without the section gets vz's defaults (vzslave.oci.DEFAULT_CAPABILITIES), which
  must then lie within it too.
- ``join_namespaces``: whether ``linux.namespaces[].path`` may join an existing one.
- ``require_namespaces``: namespace types every config must create.
- ``runtimes`` and ``runtime_args``: what ``container.start`` may choose.
- ``chroot_fallback`` (default true): whether a node that cannot pivot_root may run
  containers in a plain chroot.

A config outside the policy is refused at unpack and at start with POLICY_DENIED,
naming the config field (``details.field``) and the policy key (``details.policy``).
A policy file that cannot be read or has unknown keys refuses everything: a typo
must not open the node. Standard library only (Python 3.6+).
"""

import json
import os
from typing import Any, Dict, List, Optional, Set, Tuple

from vzslave.errors import PolicyDeniedError
from vzslave.oci import CAPABILITIES, CAPABILITY_SETS, DEFAULT_CAPABILITIES

MAX_POLICY = 64 * 1024
_KEYS: Dict[str, type] = {
    "bind_sources": list, "devices": list, "capabilities": list, "join_namespaces": bool,
    "require_namespaces": list, "runtimes": list, "runtime_args": list,
    "chroot_fallback": bool,
}
_NAMESPACES = ("mount", "uts", "ipc", "network", "cgroup", "pid")


class Policy(object):
    """A node's policy, loaded and checked for shape; ``None`` members allow anything."""

    def __init__(self, path: str, rules: Dict[str, Any]) -> None:
        self.path = path
        self.bind_sources: Optional[List[str]] = rules.get("bind_sources")
        self.devices: Optional[Set[Tuple[str, int, int]]] = (
            None if rules.get("devices") is None else {
                _device(text, path) for text in rules["devices"]})
        self.capabilities: Optional[Set[str]] = (
            None if rules.get("capabilities") is None else set(rules["capabilities"]))
        self.join_namespaces: bool = rules.get("join_namespaces", True)
        self.require_namespaces: List[str] = rules.get("require_namespaces") or []
        self.runtimes: Optional[List[str]] = rules.get("runtimes")
        self.runtime_args: Optional[List[str]] = rules.get("runtime_args")
        self.chroot_fallback: bool = rules.get("chroot_fallback", True)

    def _deny(self, field: str, key: str, message: str) -> PolicyDeniedError:
        return PolicyDeniedError("{} (policy {} in {})".format(message, key, self.path),
                                 {"field": field, "policy": key})

    # -- config.json -----------------------------------------------------------

    def check_config(self, config: Dict[str, Any], bundle: str) -> None:
        """Refuse a config.json outside the policy, naming the first field outside it."""
        process = _section(config, "process")
        linux = _section(config, "linux")
        self._check_binds(config.get("mounts"), bundle)
        self._check_devices(linux.get("devices"))
        self._check_capabilities(process.get("capabilities"))
        self._check_namespaces(linux.get("namespaces"))

    def _check_binds(self, mounts: Any, bundle: str) -> None:
        if self.bind_sources is None or not isinstance(mounts, list):
            return
        allowed = [os.path.realpath(path) for path in self.bind_sources]
        for index, mount in enumerate(mounts):
            if not isinstance(mount, dict):
                continue
            options = mount.get("options")
            if mount.get("type") != "bind" and not (
                    isinstance(options, list) and {"bind", "rbind"} & set(options)):
                continue
            source = mount.get("source")
            if not isinstance(source, str) or not source.startswith("/"):
                continue  # inside the bundle: the image's own files
            real = os.path.realpath(source)
            if not any(real == top or real.startswith(top.rstrip("/") + "/")
                       for top in allowed):
                raise self._deny("mounts[{}].source".format(index), "bind_sources",
                                 "mounts[{}] binds {}{} from the node, which this node's "
                                 "policy does not allow ({})".format(
                                     index, source, "" if real == source else
                                     " (that is {})".format(real),
                                     ", ".join(self.bind_sources) or "no node path"))

    def _check_devices(self, devices: Any) -> None:
        if self.devices is None or not isinstance(devices, list):
            return
        for index, device in enumerate(devices):
            if not isinstance(device, dict):
                continue
            key = (str(device.get("type")), device.get("major", 0), device.get("minor", 0))
            if key not in self.devices:
                raise self._deny("linux.devices[{}]".format(index), "devices",
                                 "linux.devices[{}] adds the device {} ({} {}:{}), which this "
                                 "node's policy does not allow".format(
                                     index, device.get("path"), *key))

    def _check_capabilities(self, caps: Any) -> None:
        if self.capabilities is None:
            return
        if caps is None:
            extra = sorted(set(DEFAULT_CAPABILITIES) - self.capabilities)
            if extra:
                raise self._deny("process.capabilities", "capabilities",
                                 "process.capabilities is absent, so the app would get vz's "
                                 "default set, which this node's policy does not allow in "
                                 "full ({} not allowed): list the capabilities the app "
                                 "needs".format(", ".join(extra)))
            return
        if not isinstance(caps, dict):
            return  # the reader refuses the shape, naming it
        for key in CAPABILITY_SETS:
            values = caps.get(key)
            for index, name in enumerate(values if isinstance(values, list) else []):
                if name in CAPABILITIES and name not in self.capabilities:
                    raise self._deny("process.capabilities.{}[{}]".format(key, index),
                                     "capabilities",
                                     "process.capabilities.{}[{}] is {}, which this node's "
                                     "policy does not allow".format(key, index, name))

    def _check_namespaces(self, namespaces: Any) -> None:
        listed = namespaces if isinstance(namespaces, list) else []
        made = set()
        for index, ns in enumerate(listed):
            if not isinstance(ns, dict):
                continue
            if ns.get("path"):
                if not self.join_namespaces:
                    raise self._deny("linux.namespaces[{}].path".format(index),
                                     "join_namespaces",
                                     "linux.namespaces[{}] joins the existing {} namespace "
                                     "{}, which this node's policy does not allow".format(
                                         index, ns.get("type"), ns.get("path")))
            else:
                made.add(ns.get("type"))
        for kind in self.require_namespaces:
            if kind not in made:
                raise self._deny("linux.namespaces", "require_namespaces",
                                 "linux.namespaces does not create a {} namespace, which "
                                 "this node's policy requires of every container: add "
                                 "{{\"type\": \"{}\"}}".format(kind, kind))

    # -- start options ---------------------------------------------------------

    def check_start(self, runtime: str, runtime_args: List[str]) -> None:
        """Refuse a runtime or runtime_args outside the policy."""
        if self.runtimes is not None and runtime not in self.runtimes:
            raise self._deny("runtime", "runtimes", "runtime {} is not allowed on this node "
                             "(allowed: {})".format(runtime, ", ".join(self.runtimes)))
        if self.runtime_args is not None:
            for arg in runtime_args:
                if arg not in self.runtime_args and arg.split("=")[0] not in self.runtime_args:
                    raise self._deny("runtime_args", "runtime_args",
                                     "runtime_args {} is not allowed on this node".format(arg))


def _section(config: Dict[str, Any], key: str) -> Dict[str, Any]:
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def _device(text: Any, path: str) -> Tuple[str, int, int]:
    try:
        kind, numbers = text.split()
        major, minor = numbers.split(":")
        if kind not in ("c", "b", "u", "p"):
            raise ValueError(kind)
        return kind, int(major), int(minor)
    except (AttributeError, ValueError):
        raise _broken(path, "devices entries are \"TYPE MAJOR:MINOR\" (TYPE c, b, u or p), "
                      "not {}".format(json.dumps(text))) from None


def _broken(path: str, why: str) -> PolicyDeniedError:
    return PolicyDeniedError("the node's policy {} is invalid, so every container is "
                             "refused until it is fixed: {}".format(path, why),
                             {"field": None, "policy": "file"})


def load_policy(path: str) -> Policy:
    """The policy at ``path``; an empty one if there is no file. PolicyDeniedError if the
    file is unreadable or malformed (fail closed)."""
    try:
        with open(path, "rb") as source:
            data = source.read(MAX_POLICY + 1)
    except FileNotFoundError:
        return Policy(path, {})
    except OSError as exc:
        raise _broken(path, "cannot read it: {}".format(exc.strerror)) from exc
    if len(data) > MAX_POLICY:
        raise _broken(path, "it is larger than {} bytes".format(MAX_POLICY))
    try:
        rules = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise _broken(path, "it is not JSON: {}".format(exc)) from exc
    if not isinstance(rules, dict):
        raise _broken(path, "it must hold a JSON object")
    for key, value in rules.items():
        kind = _KEYS.get(key)
        if kind is None:
            raise _broken(path, "unknown key {} (known: {})".format(
                json.dumps(key), ", ".join(sorted(_KEYS))))
        if not isinstance(value, kind) or (isinstance(value, list) and not all(
                isinstance(item, str) for item in value)):
            raise _broken(path, "{} must be {}".format(
                key, "true or false" if kind is bool else "a list of strings"))
    names: List[str] = rules.get("capabilities") or []
    for name in names:
        if name not in CAPABILITIES:
            raise _broken(path, "capabilities: {} is not a Linux capability".format(name))
    for kind in rules.get("require_namespaces") or ():
        if kind not in _NAMESPACES:
            raise _broken(path, "require_namespaces: {} is not a namespace type ({})".format(
                kind, ", ".join(_NAMESPACES)))
    return Policy(path, rules)
