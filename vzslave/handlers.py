"""The ops a node serves: one table, each op with its argument schema and handler.

Handlers validate nothing by hand and do no protocol I/O beyond their call's own
stream: the server checks arguments against the table before calling, and turns
whatever a handler raises into a wire error. docs/protocol.md documents each op.
"""

import math
import os
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple, Union

from vzslave.apps import Apps
from vzslave.bundles import BundleStore
from vzslave.config import MAX_IMAGE_SIZE, Layout, Limits
from vzslave.containers import Containers
from vzslave.errors import BadRequestError, VersionMismatchError
from vzslave.facts import node_facts
from vzslave.firewall import BACKENDS, MAX_PORTS, PROTOS, Firewall
from vzslave.images import ImageStore
from vzslave.plans import MAX_RUNTIME_ARGS, RUNTIMES
from vzslave.protocol import MAX_DATA, MAX_FRAME, MAX_ITEMS, SUPPORTED_VERSIONS
from vzslave.records import to_wire


class Node:
    """The node's state that handlers work on."""

    def __init__(self, layout: Layout, limits: Limits) -> None:
        self.layout = layout
        self.limits = limits
        self.images = ImageStore(layout, limits)
        self.bundles = BundleStore(layout, limits, self.images)
        self.containers = Containers(layout, self.bundles)
        self.bundles.in_use = self.containers.trees_in_use
        self.bundles.forget = self.containers.forget
        self.apps = Apps(layout, self.images, self.bundles, self.containers)
        self.firewall = Firewall(layout)


class Call:
    """One request in progress, as a handler sees it: its id and its streams."""

    def __init__(self, call_id: int, receive: Callable[["Call"], Iterator[bytes]],
                 send: Optional[Callable[["Call", bytes], None]] = None,
                 cancelled: Optional[Callable[["Call", float], bool]] = None) -> None:
        self.id = call_id
        self._receive = receive
        self._send = send
        self._cancelled = cancelled
        self.trailer: Dict[str, Any] = {}
        self.ended = False  # the client's stream is over: its End or Cancel was read
        self.aborted = False  # it was a Cancel: the client abandoned the stream

    def data(self) -> Iterator[bytes]:
        """The chunks the client streams for this call, up to its End (or Cancel)."""
        return self._receive(self)

    def send(self, data: bytes) -> None:
        """Stream ``data`` to the client as data frames, before the call's reply."""
        assert self._send is not None
        for start in range(0, len(data), MAX_DATA):
            self._send(self, data[start:start + MAX_DATA])

    def cancelled(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the client to cancel this call's stream."""
        assert self._cancelled is not None
        return self._cancelled(self, timeout)


Args = Dict[str, Any]
Result = Dict[str, Any]
Handler = Callable[[Node, Call, Args], Result]


class Num(NamedTuple):
    """A number argument: ``kind`` int or float, from ``low`` to ``high`` inclusive."""

    kind: type
    low: Union[int, float]
    high: Union[int, float]
    unit: str = ""  # for messages: "bytes", "seconds", ...


class Array(NamedTuple):
    """An array argument of at most ``max_len`` elements, each ``item``."""

    item: Any  # a Spec
    max_len: int = MAX_ITEMS


class Fixed(NamedTuple):
    """An array argument of exactly ``len(items)`` elements, element i ``items[i]``."""

    items: Tuple[Any, ...]  # Specs


class Choice(NamedTuple):
    """A string argument that must be one of ``values``."""

    values: Tuple[str, ...]


class Map(NamedTuple):
    """A map argument with exactly the keys of ``fields``, the value of key k ``fields[k]``."""

    fields: Dict[str, Any]  # Specs


Spec = Union[type, Num, Array, Fixed, Choice, Map]  # a plain type (str, bool, ...): its type only


class Op(NamedTuple):
    """An op's handler and schema: required and optional arguments with their specs.

    An optional argument whose default is None may also be sent as nil, which means
    the same as leaving it out.
    """

    handler: Handler
    required: Dict[str, Spec]
    optional: Dict[str, Tuple[Spec, Any]]  # name -> (spec, default)


def check_args(op_name: str, op: Op, raw: Dict[str, Any]) -> Args:
    """The arguments of a request, checked against the op's schema."""
    unknown = sorted(set(raw) - set(op.required) - set(op.optional))
    if unknown:
        raise BadRequestError("{} does not take {}".format(op_name, ", ".join(unknown)),
                              {"argument": unknown[0]})
    args: Args = {}
    for key, spec in op.required.items():
        if key not in raw:
            raise BadRequestError("{} needs the argument {!r}".format(op_name, key),
                                  {"argument": key})
        args[key] = _checked("{}: {!r}".format(op_name, key), key, raw[key], spec)
    for key, (spec, default) in op.optional.items():
        value = raw.get(key)
        if key not in raw or (value is None and default is None):
            args[key] = default
        else:
            args[key] = _checked("{}: {!r}".format(op_name, key), key, value, spec)
    return args


def _checked(what: str, key: str, value: Any, spec: Spec) -> Any:
    if isinstance(spec, Num):
        return _number(what, key, value, spec)
    if isinstance(spec, Choice):
        if not isinstance(value, str) or value not in spec.values:
            raise BadRequestError("{} must be one of {}, not {!r}".format(
                what, ", ".join(spec.values), value), {"argument": key})
        return value
    if isinstance(spec, Map):
        value = _checked(what, key, value, dict)
        if set(value) != set(spec.fields):
            raise BadRequestError("{} must be a map of exactly {}, not of {}".format(
                what, ", ".join(sorted(spec.fields)),
                ", ".join(sorted(map(str, value))) or "nothing"), {"argument": key})
        return {name: _checked("{}.{}".format(what, name), key, value[name], item_spec)
                for name, item_spec in spec.fields.items()}
    if isinstance(spec, (Array, Fixed)):
        value = _checked(what, key, value, list)
        if isinstance(spec, Fixed) and len(value) != len(spec.items):
            raise BadRequestError("{} must be an array of exactly {} elements, not {}".format(
                what, len(spec.items), len(value)), {"argument": key})
        if isinstance(spec, Array) and len(value) > spec.max_len:
            raise BadRequestError("{} must be an array of at most {} elements, not {}".format(
                what, spec.max_len, len(value)), {"argument": key})
        items = spec.items if isinstance(spec, Fixed) else [spec.item] * len(value)
        return [_checked("{}[{}]".format(what, index), key, item, item_spec)
                for index, (item, item_spec) in enumerate(zip(value, items))]
    # bool is an int in Python but not on the wire.
    if not isinstance(value, spec) or (spec is int and isinstance(value, bool)):
        raise BadRequestError("{} must be {}, not {}".format(
            what, _TYPE_WORDS.get(spec, spec.__name__), _wire_type(value)),
            {"argument": key})
    return value


def _number(what: str, key: str, value: Any, spec: Num) -> Union[int, float]:
    details = {"argument": key, "min": spec.low, "max": spec.high}
    expected = "{} {} from {}".format(what, "must be " + _TYPE_WORDS[spec.kind], _range(spec))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            spec.kind is int and isinstance(value, float)):
        raise BadRequestError("{}, not {}".format(expected, _wire_type(value)), details)
    number: Union[int, float] = value
    if spec.kind is float:
        # A whole number of seconds is a number of seconds. NaN compares false with
        # everything, so it is refused by name rather than left to the bounds.
        number = float(number)
        if not math.isfinite(number):
            raise BadRequestError("{}, not {}".format(expected, number), details)
    if not spec.low <= number <= spec.high:
        raise BadRequestError("{}, not {}".format(expected, number), details)
    return number


def _range(spec: Num) -> str:
    return "{} to {}{}".format(spec.low, spec.high, " " + spec.unit if spec.unit else "")


def _wire_type(value: Any) -> str:
    return _WIRE_WORDS.get(type(value), type(value).__name__)


_TYPE_WORDS = {str: "a string", int: "an integer", bool: "a boolean", list: "an array",
               float: "a number", dict: "a map"}
_WIRE_WORDS = {type(None): "nil", bool: "a boolean", int: "an integer", float: "a float",
               str: "a string", bytes: "binary", list: "an array", dict: "a map"}

# The ranges of the numeric arguments (inclusive; docs/protocol.md lists them).
UINT64_MAX = 2 ** 64 - 1
INT64_MAX = 2 ** 63 - 1
IMAGE_SIZE = Num(int, 0, MAX_IMAGE_SIZE, "bytes")
GRACE = Num(float, 0, 3600, "seconds")
UPTIME = Num(float, 0, 600, "seconds")  # how long start waits for the app to stay up
VERSION = Num(int, 0, 65535)


def choose_version(offered: List[Any]) -> int:
    """The highest protocol version both ends speak."""
    common = [v for v in offered if isinstance(v, int) and v in SUPPORTED_VERSIONS]
    if not common:
        raise VersionMismatchError(
            "this node speaks protocol versions {}, the client offered {}; upgrade the "
            "older side".format(list(SUPPORTED_VERSIONS), offered[:10]),
            {"versions": list(SUPPORTED_VERSIONS)})
    return max(common)


def op_hello(node: Node, call: Call, args: Args) -> Result:
    """Negotiate the version; report the node's facts and limits."""
    node.containers.upkeep()  # per-session, cheap: owed reloads, log limits, disk reserve
    return {
        "version": choose_version(args["versions"]),
        "facts": to_wire(node_facts(node.layout)),
        "limits": {"max_frame": MAX_FRAME, "max_data": MAX_DATA, "max_image": MAX_IMAGE_SIZE},
        "ops": sorted(OPS),
    }


def op_image_list(node: Node, call: Call, args: Args) -> Result:
    """All published images."""
    return {"images": [to_wire(info) for info in node.images.list()]}


def op_image_probe(node: Node, call: Call, args: Args) -> Result:
    """What the node holds of an image: the published one and a resumable prefix."""
    image, partial = node.images.probe(args["name"])
    return {
        "image": None if image is None else to_wire(image),
        "partial": None if partial is None else to_wire(partial),
    }


def op_image_put(node: Node, call: Call, args: Args) -> Result:
    """Receive an image's bytes from ``offset`` on; publish it if the sha256 matches.
    A client's cancel abandons the upload: the reply says what prefix is kept."""
    with node.images.upload(args["name"], args["size"], args["offset"]) as upload:
        for chunk in call.data():
            upload.write(chunk)
        if call.aborted:
            kept = upload.kept()
            return {"image": None, "partial": None if kept is None else to_wire(kept)}
        sha256 = call.trailer.get("sha256")
        return {"image": to_wire(upload.commit(sha256))}  # type: ignore[arg-type]


def op_image_remove(node: Node, call: Call, args: Args) -> Result:
    """Remove an image (and any kept prefix of its upload)."""
    node.images.remove(args["name"])
    return {}


def op_bundle_unpack(node: Node, call: Call, args: Args) -> Result:
    """Unpack an image into a bundle, atomically replacing a bundle of that name."""
    info = node.bundles.unpack(args["image"], args["name"], args["keep_setid"])
    return {"bundle": to_wire(info)}


def op_bundle_list(node: Node, call: Call, args: Args) -> Result:
    """All bundles."""
    return {"bundles": [to_wire(info) for info in node.bundles.list()]}


def op_bundle_remove(node: Node, call: Call, args: Args) -> Result:
    """Remove a bundle and its tree."""
    node.bundles.remove(args["name"])
    return {}


def op_container_start(node: Node, call: Call, args: Args) -> Result:
    """Have init run a container from its bundle; wait until the app runs."""
    status = node.containers.start(
        args["name"], override=args["override"], runtime=args["runtime"],
        runtime_args=args["runtime_args"], log_max=args["log_max"],
        log_keep=args["log_keep"], syslog=args["syslog"], monitor=args["monitor"],
        wait=args["wait"], min_uptime=args["min_uptime"])
    return {"status": to_wire(status)}


def op_container_stop(node: Node, call: Call, args: Args) -> Result:
    """Remove the container's entry and end all its processes and mounts."""
    return {"status": to_wire(node.containers.stop(args["name"], args["grace"]))}


def op_container_restart(node: Node, call: Call, args: Args) -> Result:
    """Stop, then start the container (picking up a newly unpacked bundle)."""
    return {"status": to_wire(node.containers.restart(args["name"], args["grace"],
                                                      args["min_uptime"]))}


def op_container_status(node: Node, call: Call, args: Args) -> Result:
    """The status of one container, or of all when no name is given."""
    return {"containers": [to_wire(s) for s in node.containers.status(args["name"] or None)]}


def op_container_logs(node: Node, call: Call, args: Args) -> Result:
    """Stream a container's log: the last lines or from a cursor, then (follow) new lines
    until the client cancels. The reply carries the cursor to resume from."""
    from vzslave import logs
    name = args["name"]
    node.containers.status(name)  # NO_SUCH_CONTAINER before any stream
    path = node.layout.log_file(name)
    keep = node.containers.log_limits(name)[1]
    cursor = args["cursor"]
    if cursor is None:
        data, start = logs.tail(path, args["lines"], keep)
        call.send(data)
    else:
        start = logs.Cursor(cursor[0], cursor[1])
    follower = logs.Follower(path, start, keep)
    try:
        while True:
            data = follower.read(MAX_DATA)
            if data:
                call.send(data)
                if call.cancelled(0):
                    break
            elif not args["follow"] or call.cancelled(0.25):
                break
        return {"cursor": list(follower.cursor)}
    finally:
        follower.close()


def _start_options(args: Args) -> Dict[str, Any]:
    return {key: args[key] for key in ("runtime", "runtime_args", "log_max", "log_keep",
                                       "syslog", "monitor")}


def op_app_deploy(node: Node, call: Call, args: Args) -> Result:
    """Unpack an image as an app's next release and switch to it once healthy."""
    info = node.apps.deploy(
        args["app"], args["image"], env=args["env"], secrets=args["secrets"],
        volumes=args["volumes"], health_spec=args["health"], release_command=args["release"],
        keep=args["keep"], override=args["override"], grace=args["grace"],
        options=_start_options(args), labels=args["labels"], report=_reporter(call, args))
    return {"release": to_wire(info)}


def _reporter(call: Call, args: Args) -> Optional[Callable[[str, str], None]]:
    """With ``progress``, each step of a deploy or rollback as a data frame: the UTF-8
    line ``STAGE\tDETAIL\n``, sent as the step starts."""
    if not args["progress"]:
        return None

    def report(stage: str, detail: str) -> None:
        call.send("{}\t{}\n".format(stage, detail.replace("\n", " ")).encode("utf-8"))

    return report


def op_app_diff(node: Node, call: Call, args: Args) -> Result:
    """What a deploy of an image with these settings would change in an app."""
    diff = node.apps.diff(
        args["app"], args["sha256"], env=args["env"], secrets=args["secrets"],
        volumes=args["volumes"], health_spec=args["health"],
        release_command=args["release"], options=_start_options(args),
        labels=args["labels"])
    return {"diff": to_wire(diff)}


def op_app_check(node: Node, call: Call, args: Args) -> Result:
    """An app's health check, tried once now."""
    return {"health": to_wire(node.apps.check(args["app"]))}


def op_app_rollback(node: Node, call: Call, args: Args) -> Result:
    """Switch an app back to an earlier release, health-checked."""
    return {"release": to_wire(node.apps.rollback(args["app"], args["release"],
                                                  args["grace"], _reporter(call, args)))}


def op_app_releases(node: Node, call: Call, args: Args) -> Result:
    """An app's kept releases, newest first."""
    return {"releases": [to_wire(info) for info in node.apps.releases(args["app"])]}


def op_app_list(node: Node, call: Call, args: Args) -> Result:
    """Every app on the node."""
    return {"apps": [to_wire(info) for info in node.apps.list()]}


def op_app_remove(node: Node, call: Call, args: Args) -> Result:
    """Stop an app and delete its releases, settings and secrets (volumes if asked)."""
    node.apps.remove(args["app"], args["volumes"], args["grace"])
    return {}


def op_app_run(node: Node, call: Call, args: Args) -> Result:
    """Run a one-off command in an app's current release."""
    return {"result": to_wire(node.apps.run(args["app"], args["argv"], args["timeout"]))}


def op_app_volumes(node: Node, call: Call, args: Args) -> Result:
    """An app's volumes."""
    return {"volumes": [to_wire(info) for info in node.apps.volumes(args["app"])]}


def op_app_volume_remove(node: Node, call: Call, args: Args) -> Result:
    """Delete one of an app's volumes."""
    node.apps.remove_volume(args["app"], args["name"])
    return {}


def op_firewall_apply(node: Node, call: Call, args: Args) -> Result:
    """Make the node's firewall chain accept SSH and the declared ports, and drop the rest."""
    return {"firewall": to_wire(node.firewall.apply(
        args["ports"], args["ssh_port"], args["backend"], os.environ.get("SSH_CONNECTION")))}


def op_firewall_status(node: Node, call: Call, args: Args) -> Result:
    """The node's firewall chain: what vz applied, whether it is active, its drift."""
    return {"firewall": to_wire(node.firewall.status())}


def op_firewall_remove(node: Node, call: Call, args: Args) -> Result:
    """Delete vz's chain and its jump (or vz's nft table); nothing else."""
    return {"firewall": to_wire(node.firewall.remove())}


PORT = Map({"port": Num(int, 1, 65535), "proto": Choice(PROTOS)})

START_OPTIONS: Dict[str, Tuple[Spec, Any]] = {
    "runtime": (Choice(RUNTIMES), None),
    "runtime_args": (Array(str, MAX_RUNTIME_ARGS), None),
    "log_max": (Num(int, 1024, 1024 ** 3, "bytes"), None),
    "log_keep": (Num(int, 0, 100, "files"), None),
    "syslog": (bool, None), "monitor": (bool, None)}

OPS: Dict[str, Op] = {
    "hello": Op(op_hello, {"versions": Array(VERSION, 64)}, {"client": (str, "")}),
    "image.list": Op(op_image_list, {}, {}),
    "image.probe": Op(op_image_probe, {"name": str}, {}),
    "image.put": Op(op_image_put, {"name": str, "size": IMAGE_SIZE},
                    {"offset": (IMAGE_SIZE, 0)}),  # a client stream: conversation.STREAMS
    "image.remove": Op(op_image_remove, {"name": str}, {}),
    "bundle.unpack": Op(op_bundle_unpack, {"image": str, "name": str},
                        {"keep_setid": (bool, False)}),
    "bundle.list": Op(op_bundle_list, {}, {}),
    "bundle.remove": Op(op_bundle_remove, {"name": str}, {}),
    "container.start": Op(op_container_start, {"name": str}, dict(
        START_OPTIONS, override=(bool, False), wait=(bool, True), min_uptime=(UPTIME, 1.0))),
    "container.stop": Op(op_container_stop, {"name": str}, {"grace": (GRACE, 10.0)}),
    "container.restart": Op(op_container_restart, {"name": str}, {"grace": (GRACE, 10.0),
                                                                  "min_uptime": (UPTIME, 1.0)}),
    "container.status": Op(op_container_status, {}, {"name": (str, "")}),
    "container.logs": Op(op_container_logs, {"name": str}, {
        "lines": (Num(int, 0, 100000, "lines"), 100),
        "cursor": (Fixed((Num(int, 0, UINT64_MAX), Num(int, 0, INT64_MAX, "bytes"))), None),
        "follow": (bool, False)}),
    "app.deploy": Op(op_app_deploy, {"app": str, "image": str}, dict(
        START_OPTIONS, env=(dict, None), secrets=(dict, None), volumes=(dict, None),
        health=(dict, None), release=(Array(str, 256), None),
        keep=(Num(int, 1, 100, "releases"), 3), override=(bool, False),
        grace=(GRACE, 10.0), labels=(dict, None), progress=(bool, False))),
    "app.diff": Op(op_app_diff, {"app": str, "sha256": str}, dict(
        START_OPTIONS, env=(dict, None), secrets=(dict, None), volumes=(dict, None),
        health=(dict, None), release=(Array(str, 256), None), labels=(dict, None))),
    "app.check": Op(op_app_check, {"app": str}, {}),
    "app.rollback": Op(op_app_rollback, {"app": str}, {
        "release": (Num(int, 1, INT64_MAX), None), "grace": (GRACE, 10.0),
        "progress": (bool, False)}),
    "release.list": Op(op_app_releases, {"app": str}, {}),
    "app.list": Op(op_app_list, {}, {}),
    "app.remove": Op(op_app_remove, {"app": str}, {"volumes": (bool, False),
                                                   "grace": (GRACE, 10.0)}),
    "app.run": Op(op_app_run, {"app": str, "argv": Array(str, 256)}, {
        "timeout": (Num(float, 0.1, 86400, "seconds"), 600.0)}),
    "volume.list": Op(op_app_volumes, {"app": str}, {}),
    "volume.remove": Op(op_app_volume_remove, {"app": str, "name": str}, {}),
    "firewall.apply": Op(op_firewall_apply, {"ports": Array(PORT, MAX_PORTS)}, {
        "ssh_port": (Num(int, 0, 65535), 22), "backend": (Choice(BACKENDS), None)}),
    "firewall.status": Op(op_firewall_status, {}, {}),
    "firewall.remove": Op(op_firewall_remove, {}, {}),
}
