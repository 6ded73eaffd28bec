"""vz.yml: find it, read it (with the line of every key), check it, and the fleet it says.

    config = load()                              # -c FILE, VZ_CONFIG, ./vz.yml upwards
    config.nodes["fra1"].host, config.apps["web"].replicas
    config.node_options("fra1")                  # -> SSHOptions
    config.secret_values("web")                  # -> {"DB_PASSWORD": ...}

Every problem is one line, ``vz.yml:14: apps.web.replica: unknown key (did you mean
'replicas'?)``, all of them at once, sorted by line, in one ``ConfigError``. Three
passes, each only if the one before found nothing: the YAML (vzmaster.fleet.yamlfile:
safe loading, the line of every key, duplicate keys refused), each value's shape and
type (vzmaster.fleet.schema: pydantic, and the node's own checks), then here the rules
that need the whole fleet: the inventory merged in (vzmaster.fleet.inventory), node
and group names, replicas against nodes, repeats.

Decisions (docs/fleet.md says them for users):

- Paths (``key``, ``known_hosts``, ``image``, ``inventory``, the build's files) get
  ``~`` expanded, and a relative one is relative to vz.yml's directory, wherever vz
  runs: the file means the same from any directory. A build's ``ldd`` entry without a
  ``/`` is a program looked up in PATH, as ``vzmaster build`` does; ``strace`` is a
  command line and stays as written.
- Sizes (``log_max``): a number is bytes; K, M, G, T with or without B or iB are
  powers of 1024 (``10MiB`` = ``10M`` = ``10MB`` = 10485760), case-insensitive.
- Secrets come from the environment first, then from ``.env`` beside vz.yml, read
  only when needed: ``NAME=VALUE`` lines, ``#`` comment lines, blank lines, an optional
  ``export``, a value optionally in single or double quotes (kept verbatim inside:
  no escapes, no ``$VAR`` interpolation, no multi-line values, no trailing comments).
  A ``.env`` that group or others may access is used, with a warning on the
  ``vzmaster.fleet`` logger: refusing would break a checkout made with a umask of 022,
  and the file's owner decided. Secret values never appear in a message or repr.
- Nodes: a ``nodes:`` entry for a host the inventory also has overrides the fields it
  sets (``groups`` too, whole); both override ``ssh:``, which overrides SSH's own
  defaults (~/.ssh/config). Order: ``nodes:`` as written, then the inventory's others.
- The name ``all`` is reserved: ``nodes: all`` means every node, so no node or group
  may be called that, and it cannot appear in a list.
- The file is named in messages as the user would type it: relative to the current
  directory when it is inside it, else its absolute path.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

from vzmaster.fleet import schema
from vzmaster.fleet.inventory import InventoryError, read_inventory
from vzmaster.fleet.schema import Port
from vzmaster.fleet.yamlfile import KeyPath, Lines, dotted, line_of, read_yaml
from vzmaster.transports.base import SSHOptions
from vzslave.errors import Error

if TYPE_CHECKING:
    from vzmaster.imaging.builder import Recipe

__all__ = ["AppSpec", "ConfigError", "FleetConfig", "NodeSpec", "Port", "find_config", "load",
           "load_config", "read_dotenv"]

log = logging.getLogger("vzmaster.fleet")

NAMES = ("vz.yml", "vz.yaml")  # looked for in the current directory, then its parents
DOTENV = ".env"  # beside vz.yml


class ConfigError(Error):
    """vz.yml is missing or wrong: ``problems`` holds one line each, ``message`` them all."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        lines = problems.splitlines() if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(lines))
        self.problems = lines


# -- the fleet vz.yml describes --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """One node, its SSH fields merged (``nodes:`` over the inventory over ``ssh:``)."""

    name: str
    host: str  # an address, a name or an ~/.ssh/config alias
    user: str | None = None  # None: ~/.ssh/config's, then the local user
    port: int | None = None  # None: ~/.ssh/config's, then 22
    key: tuple[str, ...] = ()  # private key files, absolute
    known_hosts: str | None = None  # absolute; None: ~/.ssh/config's, then the usual
    via: str = "paramiko"  # or "openssh"
    groups: tuple[str, ...] = ()
    firewall: bool = False


@dataclasses.dataclass(frozen=True)
class AppSpec:
    """One app as vz.yml says it; what the node takes is in the node's own shapes."""

    name: str
    image: str | None = None  # absolute; whether it exists is the deploy's question
    build: Recipe | None = None  # its paths absolute
    replicas: int | None = None  # as written
    nodes: tuple[str, ...] | Literal["all"] | None = None  # as written (names or groups)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    secrets: tuple[str, ...] = ()  # names; the values: FleetConfig.secret_values
    volumes: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> path inside
    ports: tuple[Port, ...] = ()
    health: dict[str, Any] | None = None  # app.deploy's health spec
    keep: int = 3
    start: dict[str, Any] = dataclasses.field(default_factory=dict)  # the keys given only
    release: list[str] | None = None
    max_unavailable: int = 1
    grace: float = 10.0


@dataclasses.dataclass(frozen=True)
class FleetConfig:
    """The fleet: its nodes and groups, its apps, and how to reach each node."""

    path: str  # vz.yml, absolute
    name: str
    nodes: dict[str, NodeSpec]  # in the order declared
    apps: dict[str, AppSpec] = dataclasses.field(default_factory=dict)
    groups: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # -> node names
    inventory: str | None = None  # the Ansible inventory read, absolute
    connect_timeout: float = 10.0  # ssh.connect_timeout
    # Where secret values are looked up first; never shown.
    environ: Mapping[str, str] = dataclasses.field(default_factory=lambda: os.environ,
                                                   repr=False, compare=False)
    # The line of each key path of vz.yml, for the messages of later checks.
    lines: Lines = dataclasses.field(default_factory=dict, repr=False, compare=False)
    _dotenv: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict, repr=False,
                                                           compare=False)  # read once

    @property
    def directory(self) -> str:
        """The directory of vz.yml, which relative paths in it are relative to."""
        return os.path.dirname(self.path)

    def expand(self, names: Sequence[str] | Literal["all"]) -> list[str]:
        """Node and group names -> node names, in the order declared, each once."""
        if isinstance(names, str) and names != "all":
            names = [names]
        unknown = [name for name in ([] if names == "all" else names)
                   if name not in self.nodes and name not in self.groups]
        if unknown:
            raise ConfigError([f"{_shown(self.path)}: {_no_such(name, self.nodes, self.groups)}"
                               for name in unknown])
        return _expand(self.nodes, self.groups, names)

    def eligible_nodes(self, app: str) -> list[str]:
        """The nodes ``app`` may run on: those its ``nodes:`` names, else every node."""
        spec = self._app(app)
        return self.expand("all" if spec.nodes is None else spec.nodes)

    def wanted_count(self, app: str) -> int | None:
        """How many replicas ``app`` wants; None for one on each of its eligible nodes."""
        spec = self._app(app)
        if spec.replicas is not None:
            return spec.replicas
        return 1 if spec.nodes is None else None

    def node_options(self, name: str, connect_timeout: float | None = None) -> SSHOptions:
        """How to reach node ``name``: its fields, ``ssh:``'s defaults under them."""
        node = self.nodes.get(name)
        if node is None:
            close = difflib.get_close_matches(name, list(self.nodes), n=1)
            raise ConfigError(f"{_shown(self.path)}: no node named {name!r}" + (
                f" (did you mean {close[0]!r}?)" if close else ""))
        return SSHOptions(
            host=node.host, user=node.user, port=node.port, key_filename=node.key or None,
            known_hosts=node.known_hosts, via=node.via,
            connect_timeout=self.connect_timeout if connect_timeout is None else connect_timeout)

    def secret_values(self, app: str) -> dict[str, str]:
        """The values of ``app``'s secrets: from the environment, else from .env.

        Raises ConfigError naming every secret found in neither; never a value.
        """
        dotenv_path = os.path.join(self.directory, DOTENV)
        values: dict[str, str] = {}
        missing: schema.Problems = []
        for index, name in enumerate(self._app(app).secrets):
            if name in self.environ:
                values[name] = self.environ[name]
                continue
            if dotenv_path not in self._dotenv:
                self._dotenv[dotenv_path] = read_dotenv(dotenv_path)
            if name in self._dotenv[dotenv_path]:
                values[name] = self._dotenv[dotenv_path][name]
                continue
            looked = (f"{_shown(dotenv_path)} has no line for it"
                      if os.path.exists(dotenv_path) else f"there is no {_shown(dotenv_path)}")
            missing.append((("apps", app, "secrets", index),
                            f"secret {name} of app {app} is not set: it is not in the "
                            f"environment, and {looked}"))
        if missing:
            raise _error(self.path, self.lines, missing)
        return values

    def _app(self, name: str) -> AppSpec:
        if name not in self.apps:
            close = difflib.get_close_matches(name, list(self.apps), n=1)
            raise ConfigError(f"{_shown(self.path)}: no app named {name!r}" + (
                f" (did you mean {close[0]!r}?)" if close else ""))
        return self.apps[name]


# -- finding and loading ---------------------------------------------------------------


def find_config(explicit: str | None, environ: Mapping[str, str], cwd: str) -> str:
    """The absolute path of vz.yml: ``explicit`` (-c FILE), else $VZ_CONFIG, else the
    first vz.yml or vz.yaml in ``cwd`` or a directory above it."""
    given = [(explicit, "-c")] if explicit is not None else []
    given += [(environ["VZ_CONFIG"], "VZ_CONFIG")] if environ.get("VZ_CONFIG") else []
    for value, how in given[:1]:
        path = os.path.normpath(os.path.join(cwd, os.path.expanduser(value)))
        if not os.path.isfile(path):
            raise ConfigError(f"{how} {value}: " + (
                "is a directory: give the file" if os.path.isdir(path) else "no such file"))
        return path
    directory = os.path.abspath(cwd)
    while True:
        found = [os.path.join(directory, name) for name in NAMES
                 if os.path.isfile(os.path.join(directory, name))]
        if len(found) > 1:
            raise ConfigError(f"both {found[0]} and {found[1]}: which one is meant? Keep one")
        if found:
            return found[0]
        parent = os.path.dirname(directory)
        if parent == directory:
            raise ConfigError(
                f"no vz.yml (or vz.yaml) in {os.path.abspath(cwd)} or any directory above it: "
                "write one, or give its path with -c FILE or VZ_CONFIG=FILE")
        directory = parent


def load(explicit: str | None = None, environ: Mapping[str, str] | None = None,
         cwd: str | None = None) -> FleetConfig:
    """Find vz.yml (find_config) and load it (load_config)."""
    environ = os.environ if environ is None else environ
    return load_config(find_config(explicit, environ, cwd or os.getcwd()), environ)


def load_config(path: str, environ: Mapping[str, str] | None = None) -> FleetConfig:
    """The fleet vz.yml at ``path`` describes; ConfigError with every problem found.

    ``environ`` (default: os.environ, read when secrets are asked for) is where
    secret values are looked up first.
    """
    path = os.path.abspath(path)
    try:
        with open(path, "rb") as file:
            text = file.read()
    except OSError as exc:
        raise ConfigError(f"{_shown(path)}: cannot read it: {exc.strerror or exc}") from None
    data, lines, problems = read_yaml(text)
    if problems:
        raise ConfigError([f"{_shown(path)}:{line}: {message}"
                           for line, message in sorted(problems)])
    if data is None:
        raise ConfigError(f"{_shown(path)}:1: the file is empty: give nodes: (or inventory:) "
                          "and apps:")
    model, wrong = schema.validate(schema.FleetModel, data)
    if model is None:
        raise _error(path, lines, wrong)
    return _assemble(path, model, lines, os.environ if environ is None else environ)


# -- from the checked file to the fleet ------------------------------------------------


def _assemble(path: str, model: schema.FleetModel, lines: Lines,
              environ: Mapping[str, str]) -> FleetConfig:
    """The fleet, once the rules that need all of it hold; else ConfigError."""
    directory = os.path.dirname(path)
    problems: schema.Problems = []
    inventory = _resolve(model.inventory, directory) if model.inventory else None
    hosts: dict[str, schema.NodeModel] = {}
    if inventory:
        hosts, wrong = _inventory_hosts(inventory)
        problems += wrong
    nodes, wrong = _nodes(model, hosts, directory)
    problems += wrong
    groups, wrong = _groups(model, nodes)
    problems += wrong
    if not nodes and not problems:
        problems.append(_no_nodes(model))
    name = model.name or _name_of(directory)
    if not name:
        problems.append(((), f"the directory name {os.path.basename(directory)!r} makes no "
                             "fleet name: give one with name:"))
    apps: dict[str, AppSpec] = {}
    for app_name, app in (model.apps or {}).items():
        problems += _app_problems(app_name, app, nodes, groups)
        apps[app_name] = _app_spec(app_name, app, directory)
    if problems:
        raise _error(path, lines, problems)
    ssh = model.ssh or schema.SSHModel()
    return FleetConfig(path=path, name=name, nodes=nodes, apps=apps, groups=groups,
                       inventory=inventory, connect_timeout=ssh.connect_timeout,
                       environ=environ, lines=lines)


def _no_nodes(model: schema.FleetModel) -> tuple[KeyPath, str]:
    if model.nodes is not None:
        return ("nodes",), "is empty: list the fleet's nodes here, or name an Ansible " \
                           "inventory with inventory:"
    if model.inventory is not None:
        return ("inventory",), f"{model.inventory} has no hosts, and there is no nodes:"
    return (), "no nodes: list them under nodes:, or name an Ansible inventory with inventory:"


def _inventory_hosts(inventory: str) -> tuple[dict[str, schema.NodeModel], schema.Problems]:
    """The inventory's hosts as checked node entries; problems at ``inventory:``."""
    try:
        found = read_inventory(inventory)
    except InventoryError as exc:
        return {}, [(("inventory",), f"{_shown(inventory)}: {exc.message}")]
    model, wrong = schema.validate(schema.InventoryModel, {"hosts": found})
    if model is None:
        return {}, [(("inventory",), f"{_shown(inventory)}: host {dotted(where[1:])}: {message}")
                    for where, message in wrong]
    return model.hosts, []


def _nodes(model: schema.FleetModel, hosts: dict[str, schema.NodeModel],
           directory: str) -> tuple[dict[str, NodeSpec], schema.Problems]:
    """``nodes:`` merged over the inventory's hosts, over ``ssh:``."""
    ssh = model.ssh or schema.SSHModel()
    written = model.nodes or {}
    nodes: dict[str, NodeSpec] = {}
    problems: schema.Problems = []
    for name in list(written) + [host for host in hosts if host not in written]:
        fields: dict[str, Any] = {}
        for source in (hosts.get(name), written.get(name)):  # the later one overrides
            if source is not None:
                fields.update({key: value for key, value in source if
                               key in source.model_fields_set and value is not None})
        if "host" not in fields:
            problems.append((("nodes", name), "missing host: give the node's address, name "
                                              "or ~/.ssh/config alias"))
            continue
        key = fields.get("key", ssh.key) or ()
        known_hosts = fields.get("known_hosts", ssh.known_hosts)
        nodes[name] = NodeSpec(
            name=name, host=fields["host"], user=fields.get("user", ssh.user),
            port=fields.get("port", ssh.port),
            key=tuple(_resolve(file, directory) for file in key),
            known_hosts=_resolve(known_hosts, directory) if known_hosts else None,
            via=fields.get("via", ssh.via) or "paramiko",
            groups=tuple(dict.fromkeys(fields.get("groups", ()))),
            firewall=fields.get("firewall", False))
    return nodes, problems


def _groups(model: schema.FleetModel,
            nodes: dict[str, NodeSpec]) -> tuple[dict[str, list[str]], schema.Problems]:
    """Group -> its nodes, in the order declared; a group may not share a node's name."""
    groups: dict[str, list[str]] = {}
    problems: schema.Problems = []
    written = model.nodes or {}
    for node in nodes.values():
        for group in node.groups:
            if group not in nodes:
                groups.setdefault(group, []).append(node.name)
                continue
            here = written.get(node.name)
            where: KeyPath = ("inventory",)
            if here is not None and "groups" in here.model_fields_set:
                where = ("nodes", node.name, "groups", here.groups.index(group))
            problems.append((where, f"node {node.name} is in group {group!r}, which is also a "
                                    "node's name: rename the group"))
    return groups, problems


def _app_problems(name: str, app: schema.AppModel, nodes: dict[str, NodeSpec],
                  groups: dict[str, list[str]]) -> schema.Problems:
    """What is wrong with ``app`` given the fleet: names in nodes:, replicas, repeats."""
    at = ("apps", name)
    problems: schema.Problems = []
    named = list(app.nodes) if isinstance(app.nodes, tuple) else []
    for index, target in enumerate(named):
        if target not in nodes and target not in groups:
            problems.append((at + ("nodes", index), _no_such(target, nodes, groups)))
    if app.replicas is not None and not problems and nodes:
        eligible = _expand(nodes, groups, "all" if app.nodes is None else named)
        if app.replicas > len(eligible):
            among = (f"the {len(eligible)} nodes nodes: names" if named
                     else f"the fleet's {len(eligible)} nodes")
            problems.append((at + ("replicas",), f"{app.replicas} replicas, but at most one "
                                                 f"runs on each of {among}"))
    for field, items in (("ports", [str(port) for port in app.ports]),
                         ("secrets", list(app.secrets))):
        for index, item in enumerate(items):
            if item in items[:index]:
                problems.append((at + (field, index), f"{item} is listed twice"))
    for index, secret in enumerate(app.secrets):
        if secret in app.env:
            problems.append((at + ("secrets", index), f"{secret} is in env: too: keep one"))
    return problems


def _app_spec(name: str, app: schema.AppModel, directory: str) -> AppSpec:
    nodes: tuple[str, ...] | Literal["all"] | None = None
    if isinstance(app.nodes, tuple):
        nodes = app.nodes
    elif app.nodes is not None:
        nodes = "all"
    return AppSpec(
        name=name, image=_resolve(app.image, directory) if app.image else None,
        build=_recipe(app.build, directory) if app.build else None,
        replicas=app.replicas, nodes=nodes, env=dict(app.env), secrets=tuple(app.secrets),
        volumes=dict(app.volumes), ports=tuple(app.ports),
        health=app.health.spec() if app.health else None, keep=app.keep,
        start=app.start.model_dump(exclude_none=True) if app.start else {},
        release=list(app.release) if app.release is not None else None,
        max_unavailable=app.max_unavailable, grace=app.grace)


def _recipe(build: schema.BuildModel, directory: str) -> Recipe:
    """The build's Recipe, its files of this machine resolved as from vz.yml's directory."""
    # Imported here: the builder brings pyelftools and zstandard (~70 ms), which only
    # a fleet that builds needs.
    from vzmaster.imaging.builder import Recipe

    fields = build.model_dump(exclude_unset=True)  # the Recipe's defaults for the rest
    for key in ("spec", "spec_out", "from_root"):
        if fields.get(key):
            fields[key] = _resolve(fields[key], directory)
    if fields.get("seccomp") not in (None, "default", "unconfined"):
        fields["seccomp"] = _resolve(fields["seccomp"], directory)
    if "ldd" in fields:  # a bare name is a program in PATH
        fields["ldd"] = [_resolve(item, directory) if "/" in item else item
                         for item in fields["ldd"]]
    if "library_path" in fields:
        fields["library_path"] = [_resolve(item, directory) for item in fields["library_path"]]
    if "add" in fields:  # SRC[:DEST]: SRC is this machine's
        fields["add"] = [_resolve(source, directory) + colon + dest for source, colon, dest
                         in (item.partition(":") for item in fields["add"])]
    return Recipe(**fields)


def _expand(nodes: Mapping[str, Any], groups: Mapping[str, list[str]],
            names: Sequence[str] | Literal["all"]) -> list[str]:
    if names == "all":
        return list(nodes)
    wanted = set()
    for name in names:
        wanted.update(groups.get(name, [name]))
    return [node for node in nodes if node in wanted]


def _no_such(name: str, nodes: Mapping[str, Any], groups: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(nodes) + list(groups), n=1)
    return f"no node or group named {name!r}" + (
        f" (did you mean {close[0]!r}?)" if close else "")


def _resolve(path: str, directory: str) -> str:
    """``path`` with ~ expanded, relative to ``directory`` if relative; normalised."""
    return os.path.normpath(os.path.join(directory, os.path.expanduser(path)))


def _name_of(directory: str) -> str:
    """The fleet name a directory's name makes: lower case, runs of others as -."""
    name = re.sub(r"[^a-z0-9-]+", "-", os.path.basename(directory).lower()).strip("-")
    return name[:63].rstrip("-")


def _shown(path: str) -> str:
    """``path`` as the user would type it: relative if under the current directory."""
    try:
        relative = os.path.relpath(path)
    except (OSError, ValueError):  # no current directory any more
        return path
    return path if relative.split(os.sep)[0] == os.pardir else relative


def _error(path: str, lines: Lines, problems: schema.Problems) -> ConfigError:
    """One ConfigError of ``problems``: ``FILE:LINE: key.path: message``, by line."""
    rows = sorted(((line_of(lines, where), where, message) for where, message in problems),
                  key=lambda row: row[0])
    return ConfigError([f"{_shown(path)}:{line}: " + (f"{dotted(where)}: " if where else "")
                        + message for line, where, message in rows])


# -- .env ----------------------------------------------------------------------------


def read_dotenv(path: str) -> dict[str, str]:
    """NAME -> value of a .env file ({} if there is none); ConfigError if malformed.

    The format is in the module docstring. A message never shows a line's text: it may
    hold a secret.
    """
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            data = file.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{_shown(path)}: cannot read it: {exc.strerror or exc}") from None
    if mode & 0o077:
        log.warning("%s holds secrets but its mode is %03o: chmod 600 it", _shown(path),
                    mode & 0o777)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{_shown(path)}: not UTF-8 text") from None
    values: dict[str, str] = {}
    problems = []
    for number, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = re.sub(r"\Aexport\s+", "", line)
        name, equals, value = (part.strip() for part in line.partition("="))
        if not equals or not schema.ENV_NAME.match(name):
            problems.append(f"{_shown(path)}:{number}: expected NAME=VALUE (the line is not "
                            "shown: it may hold a secret)")
        elif value[:1] in ("'", '"') and (len(value) < 2 or value[-1] != value[0]):
            problems.append(f"{_shown(path)}:{number}: {name}: the quote is not closed on "
                            "this line (values are one line each)")
        else:
            values[name] = value[1:-1] if value[:1] in ("'", '"') else value
    if problems:
        raise ConfigError(problems)
    return values
