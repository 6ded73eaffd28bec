"""vz.yml's shape as pydantic models, and pydantic's complaints in plain words.

The models are strict (a YAML ``8080`` is not the string "8080", ``yes`` is not a
string at all) and forbid unknown keys. They check one value at a time; what needs
the whole fleet (node and group names used in ``nodes:``, replicas against nodes) is
vzmaster.fleet.config's. Where the node has a check of its own (a health spec, volumes,
an env, a command) it runs here too, so the two never disagree. ``validate`` returns
the model or the problems, (key path, message), never raises.

These models are the file as written; vzmaster.fleet.config turns them into the
public records (NodeSpec, AppSpec) with paths resolved and defaults merged.
"""

from __future__ import annotations

import datetime
import difflib
import re
import typing
from typing import (Annotated, Any, Callable, Dict, List, Literal, NamedTuple, Optional, Tuple,
                    TypeVar, Union)

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PlainValidator,
                      ValidationError, field_validator, model_validator)

from vzmaster.fleet.yamlfile import KeyPath
from vzslave import health, releases
from vzslave.errors import BadNameError, BadRequestError
from vzslave.names import validate_name

NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}\Z")  # nodes, groups, apps
FLEET_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\Z")  # fits a DNS label
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}\Z")  # the node's rule
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
LOG_MAX = (1024, 1024 ** 3)  # the node's range for log_max, bytes
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?\Z", re.I)
_PORT = re.compile(r"(\d+)(?:/(tcp|udp))?\Z")

Problems = List[Tuple[KeyPath, str]]
M = TypeVar("M", bound=BaseModel)


class Port(NamedTuple):
    """A port an app listens on: ``Port(8080, "tcp")``, shown as ``8080/tcp``."""

    number: int
    proto: str  # "tcp" or "udp"

    def __str__(self) -> str:
        return f"{self.number}/{self.proto}"


# -- single values: names, ports, sizes, paths ----------------------------------------


def _named(kind: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value == "all":
            raise ValueError(f"'all' is reserved (nodes: all means every node): give the "
                             f"{kind} another name")
        if not NAME.match(value):
            raise ValueError(f"bad {kind} name {value!r}: use 1 to 63 of a-z, 0-9, _ . and -, "
                             "starting with a letter or digit")
        if kind == "app":
            try:
                validate_name("app", value)  # the node's gate, should it ever be stricter
            except BadNameError as exc:
                raise ValueError(exc.message) from None
        return value
    return check


def _fleet_name(value: str) -> str:
    if not FLEET_NAME.match(value):
        raise ValueError(f"bad fleet name {value!r}: use 1 to 63 of a-z, 0-9 and -, "
                         "starting with a letter or digit")
    return value


def _env_name(value: str) -> str:
    if not ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name: use letters, digits "
                         "and _, not starting with a digit")
    return value


def _host(value: str) -> str:
    if not value or value.startswith("-") or any(c.isspace() for c in value):
        raise ValueError(f"bad host {value!r}: give a name, an address or an ~/.ssh/config "
                         "alias, without spaces, not starting with -")
    return value


def parse_port(value: object) -> Port:
    """8080, "8080", "8080/tcp" or "53/udp" -> Port; ValueError for anything else."""
    match = _PORT.match(value) if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        number, proto = value, "tcp"
    elif match:
        number, proto = int(match.group(1)), match.group(2) or "tcp"
    else:
        raise ValueError(f"expected a port such as 8080, 8080/tcp or 53/udp, got {show(value)}")
    if not 0 < number < 65536:
        raise ValueError(f"port {number} is not from 1 to 65535")
    return Port(number, proto)


def parse_size(value: object) -> int:
    """Bytes: an int, or "10MiB", "512k", "1G", "100KB" (K, M, G, T are powers of 1024)."""
    match = _SIZE.match(value.strip()) if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif match:
        size = int(float(match.group(1)) * SIZE_UNITS[(match.group(2) or "").lower()])
    else:
        raise ValueError(f"expected a size such as 10MiB, 512k or 1048576 (bytes), got "
                         f"{show(value)}")
    low, high = LOG_MAX
    if not low <= size <= high:
        raise ValueError(f"must be from 1KiB to 1GiB, got {size} bytes")
    return size


def _key_files(value: object) -> Tuple[str, ...]:
    files = [value] if isinstance(value, str) else value
    if not isinstance(files, list) or not files or not all(
            isinstance(item, str) and item for item in files):
        raise ValueError(f"expected a key file or a list of them, got {show(value)}")
    return tuple(files)


def _placement(value: object) -> Union[Tuple[str, ...], str]:
    if value == "all":
        return "all"
    if isinstance(value, str):
        raise ValueError(f"expected a list of node or group names, or all, got {value!r}: "
                         f"write [{value}] for one")
    if not isinstance(value, list) or not value or not all(
            isinstance(item, str) for item in value):
        raise ValueError(f"expected a list of node or group names, or all, got {show(value)}")
    if "all" in value:
        raise ValueError("all means every node: write nodes: all, not a list with it")
    return tuple(value)


def _node_check(check: Callable[..., Any], *args: Any) -> Any:
    """Run a check of the node's; its BadRequestError becomes pydantic's ValueError."""
    try:
        return check(*args)
    except BadRequestError as exc:
        raise ValueError(exc.message) from None


NodeName = Annotated[str, AfterValidator(_named("node"))]
GroupName = Annotated[str, AfterValidator(_named("group"))]
AppName = Annotated[str, AfterValidator(_named("app"))]
FleetName = Annotated[str, AfterValidator(_fleet_name)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Host = Annotated[str, AfterValidator(_host)]
KeyFiles = Annotated[Tuple[str, ...], PlainValidator(_key_files)]
PortSpec = Annotated[Port, PlainValidator(parse_port)]
Size = Annotated[int, PlainValidator(parse_size)]
Placement = Annotated[Union[Tuple[str, ...], str], PlainValidator(_placement)]
Text = Annotated[str, Field(min_length=1)]
Via = Literal["paramiko", "openssh"]


# -- the models --------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SSHModel(_Strict):
    """``ssh:``: what every node has unless it says otherwise."""

    user: Optional[Text] = None
    port: Optional[int] = Field(default=None, ge=1, le=65535)
    key: Optional[KeyFiles] = None
    known_hosts: Optional[Text] = None
    via: Optional[Via] = None
    connect_timeout: float = Field(default=10.0, gt=0, le=3600)


class NodeModel(_Strict):
    """One entry of ``nodes:`` (or one host of the inventory)."""

    host: Optional[Host] = None  # required once merged with the inventory's
    user: Optional[Text] = None
    port: Optional[int] = Field(default=None, ge=1, le=65535)
    key: Optional[KeyFiles] = None
    known_hosts: Optional[Text] = None
    via: Optional[Via] = None
    groups: List[GroupName] = []
    firewall: bool = False


class BuildModel(_Strict):
    """``build:``: vzmaster.imaging.builder.Recipe's fields, one for one (a test checks)."""

    args: List[str] = Field(min_length=1)
    ldd: List[str] = []
    strace: List[str] = []
    strace_for: Optional[float] = None
    spec: Optional[str] = None
    spec_out: Optional[str] = None
    from_root: Optional[str] = None
    add: List[str] = []
    exclude: List[str] = []
    library_path: List[str] = []
    env: List[str] = []
    cwd: str = "/"
    user: Optional[str] = None
    readonly: bool = False
    binds: List[str] = []
    tmpfs: List[str] = []
    rlimits: List[str] = []
    cap_add: List[str] = []
    cap_drop: List[str] = []
    node_dns: bool = True
    seccomp: str = "default"


class HealthModel(_Strict):
    """``health:``: exactly one of tcp, http, cmd; the node's timings optional."""

    tcp: Optional[int] = Field(default=None, ge=1, le=65535)
    http: Optional[str] = None
    cmd: Optional[List[str]] = None
    timeout: Optional[float] = Field(default=None, gt=0)
    interval: Optional[float] = Field(default=None, gt=0)
    min_uptime: Optional[float] = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_check(self) -> HealthModel:
        kinds = [kind for kind in ("tcp", "http", "cmd") if getattr(self, kind) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of tcp:, http: or cmd:" + (
                f", not {' and '.join(kinds)}" if kinds else ""))
        _node_check(health.check_spec, self.spec())
        return self

    def spec(self) -> Dict[str, Any]:
        """The spec the node's app.deploy takes: the keys given, as given."""
        return self.model_dump(exclude_none=True)


class StartModel(_Strict):
    """``start:``: the node's start options (app.deploy's, container.start's)."""

    runtime: Optional[Literal["builtin", "runc", "crun"]] = None
    runtime_args: Optional[List[str]] = Field(default=None, max_length=16)
    log_max: Optional[Size] = None
    log_keep: Optional[int] = Field(default=None, ge=0, le=100)
    syslog: Optional[bool] = None
    monitor: Optional[bool] = None


class AppModel(_Strict):
    """One entry of ``apps:``."""

    image: Optional[Text] = None
    build: Optional[BuildModel] = None
    replicas: Optional[int] = Field(default=None, ge=1, le=1000)
    nodes: Optional[Placement] = None
    env: Dict[EnvName, str] = {}
    secrets: List[EnvName] = []
    volumes: Dict[str, str] = {}
    ports: List[PortSpec] = []
    health: Optional[HealthModel] = None
    keep: int = Field(default=3, ge=1, le=100)
    start: Optional[StartModel] = None
    release: Optional[List[str]] = None
    max_unavailable: int = Field(default=1, ge=1, le=1000)
    grace: float = Field(default=10.0, gt=0, le=3600)

    @field_validator("env")
    @classmethod
    def _env(cls, value: Dict[str, str]) -> Dict[str, str]:
        return typing.cast(Dict[str, str], _node_check(releases.check_env, value, "env"))

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, value: Dict[str, str]) -> Dict[str, str]:
        return typing.cast(Dict[str, str], _node_check(releases.check_volumes, value))

    @field_validator("release")
    @classmethod
    def _release(cls, value: Optional[List[str]]) -> Optional[List[str]]:
        if value is None:
            return None
        return typing.cast(List[str], _node_check(releases.check_command, value, "release"))

    @model_validator(mode="after")
    def _source_and_placement(self) -> AppModel:
        if (self.image is None) == (self.build is None):
            raise ValueError("give image: (a file) or build: (a recipe), " + (
                "not both" if self.image else "one of them"))
        if self.nodes == "all" and self.replicas is not None:
            raise ValueError("nodes: all runs one replica on each node: drop replicas:, or "
                             "name the nodes to choose among")
        return self


class FleetModel(_Strict):
    """The whole of vz.yml."""

    name: Optional[FleetName] = None
    ssh: Optional[SSHModel] = None
    nodes: Optional[Dict[NodeName, NodeModel]] = None
    inventory: Optional[Text] = None
    apps: Optional[Dict[AppName, AppModel]] = None


class InventoryModel(_Strict):
    """The hosts an Ansible inventory gave (vzmaster.fleet.inventory), checked as nodes."""

    hosts: Dict[NodeName, NodeModel]


# -- pydantic's errors in plain words -------------------------------------------------


def validate(model: type[M], data: object) -> Tuple[Optional[M], Problems]:
    """(the model, []) if ``data`` fits ``model``; else (None, the problems)."""
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, [_problem(model, error) for error in exc.errors(include_url=False)]


def _problem(model: type[BaseModel], error: Any) -> Tuple[KeyPath, str]:
    loc: KeyPath = tuple(error["loc"])
    if loc and loc[-1] == "[key]":  # a bad key: the path is the key's own
        loc = loc[:-1]
    return loc, _wording(model, loc, error)


def _wording(model: type[BaseModel], loc: KeyPath, error: Any) -> str:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    got = show(value)
    if kind == "extra_forbidden":
        allowed = fields_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        return "unknown key" + (f" (did you mean {close[0]!r}?)" if close
                                else f": use {', '.join(allowed)}" if allowed else "")
    if kind == "missing":
        return "missing: it is required"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    if kind == "int_type":
        return f"expected a whole number, got {got}"
    if kind == "float_type":
        return f"expected a number, got {got}"
    if kind == "bool_type":
        return f"expected true or false, got {got}"
    if kind == "string_type":
        return f"expected text, got {got}{_quote_hint(value)}"
    if kind in ("list_type", "tuple_type"):
        hint = f": write [{got}] for one" if isinstance(value, (str, int, float)) else ""
        return f"expected a list, got {got}{hint}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping (key: value), got {got}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        close = difflib.get_close_matches(str(value), choices, n=1)
        return f"expected one of {', '.join(choices)}, got {got}" + (
            f" (did you mean {close[0]!r}?)" if close else "")
    bounds = {"greater_than_equal": ("at least", "ge"), "greater_than": ("more than", "gt"),
              "less_than_equal": ("at most", "le"), "less_than": ("less than", "lt")}
    if kind in bounds:
        words, key = bounds[kind]
        bound = ctx.get(key)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)  # a float field's 0.0 reads as 0 in the file
        return f"must be {words} {bound}, got {got}"
    if kind == "too_short":
        return f"must not be empty, got {got}" if ctx.get("min_length") == 1 else \
            f"needs at least {ctx.get('min_length')} items"
    if kind == "too_long":
        return f"has too many items: at most {ctx.get('max_length')}"
    if kind == "string_too_short":
        return "must not be empty"
    message = str(error["msg"])
    return message[:1].lower() + message[1:]


def _quote_hint(value: object) -> str:
    if isinstance(value, bool):
        return (" (YAML reads an unquoted yes, no, on, off, true or false as a boolean): "
                "quote it")
    if isinstance(value, (int, float, datetime.date)):
        return f": quote it ('{value}')"
    return ""


def show(value: object) -> str:
    """A value as the message shows it: YAML's spelling for scalars, a word otherwise."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, (int, float, datetime.date)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def fields_at(model: type[BaseModel], loc: KeyPath) -> List[str]:
    """The keys allowed in the mapping at ``loc`` (model fields), or [] if not a model."""
    kind: Any = model
    for part in loc:
        kind = _unwrap(kind)
        origin = typing.get_origin(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(str(part))
            if field is None:
                return []
            kind = field.annotation
        elif origin is dict:
            kind = typing.get_args(kind)[1]
        elif origin in (list, tuple):
            kind = typing.get_args(kind)[0]
        else:
            return []
    kind = _unwrap(kind)
    return list(kind.model_fields) if isinstance(kind, type) and issubclass(
        kind, BaseModel) else []


def _unwrap(kind: Any) -> Any:
    """``Optional[X]`` and ``Annotated[X, ...]`` -> X."""
    while True:
        origin = typing.get_origin(kind)
        args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if origin is Annotated or (origin is Union and len(args) == 1):
            kind = args[0]
        else:
            return kind
