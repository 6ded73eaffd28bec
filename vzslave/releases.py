"""An app's releases as they lie on disk, and the overlay a release puts on its plan.

Layout under the state root (see config.Layout)::

    apps/APP/app.json              {"next": N, "current": N, "keep": K, "deploying": N}
    apps/APP/releases/N/           an OCI bundle (config.json, rootfs/, .vzbundle.json)
                                   and release.json: the release's own settings
    apps/APP/releases/.N.TOKEN     an unpack under way: never listed, removed by the next
    secrets/APP/N                  the release's secrets, ``NAME=VALUE\\0`` ..., 0600
    volumes/APP/NAME/              a volume: outlives every release

The image's config.json is never rewritten: env, volumes and secrets are an overlay
that ``apply_overlay`` puts on the plan vzslave makes from it, and the runner reads the
secrets from their store at every spawn (vzslave/runner.py, add_secrets). Secret
values are in no other file, no plan, no argv and no message: only their names are.
"""

import json
import os
import re
from typing import Any, Dict, List, NamedTuple, Optional

from vzslave import fs
from vzslave.config import Layout
from vzslave.errors import BadRequestError
from vzslave.names import validate_name

RELEASE = "release.json"  # in the release's bundle directory, beside config.json
APP = "app.json"  # in the app's directory
DEFAULT_KEEP = 3
MAX_KEEP = 100
MAX_VARIABLES = 1000  # env entries, and likewise secrets
MAX_VALUE = 128 * 1024  # bytes of one env or secret value
MAX_VOLUMES = 64
MAX_ARGS = 256  # words of a release or one-off command
MAX_LABELS = 32
MAX_LABEL_VALUE = 256  # characters
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}\Z")
_LABEL_NAME = re.compile(r"[a-z0-9][a-z0-9._/-]{0,62}\Z")


class Release(NamedTuple):
    """One release of an app as release.json records it (never a secret's value)."""

    app: str
    number: int
    directory: str  # its bundle directory, apps/APP/releases/N
    image: str
    sha256: str
    created: float
    env: Dict[str, str]  # set over the image's process.env
    secrets: List[str]  # names only
    volumes: Dict[str, str]  # name -> path in the container
    health: Optional[Dict[str, Any]]
    release_command: Optional[List[str]]
    options: Dict[str, Any]  # start options: runtime, runtime_args, log_max, ...
    labels: Dict[str, str] = {}  # the deployer's own marks (vzmaster's fleet: its name)


# -- checking what a deploy asks (before anything changes) ------------------------------


def check_env(env: Dict[str, Any], what: str = "env") -> Dict[str, str]:
    """``env`` if every name is an environment name and every value a string without
    NUL; else BadRequestError. The message never repeats a value (it may be a secret)."""
    if not isinstance(env, dict):
        raise BadRequestError("{} must be a map of NAME to value".format(what),
                              {"argument": what})
    if len(env) > MAX_VARIABLES:
        raise BadRequestError("{}: at most {} entries, not {}".format(
            what, MAX_VARIABLES, len(env)), {"argument": what})
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise BadRequestError(
                "{}: {!r} is not an environment variable name: use letters, digits and _, "
                "not starting with a digit".format(what, str(name)[:64]), {"argument": what})
        if not isinstance(value, str):
            raise BadRequestError("{}: the value of {} must be a string, not {}".format(
                what, name, type(value).__name__), {"argument": what, "name": name})
        if "\0" in value or len(value.encode("utf-8", "surrogateescape")) > MAX_VALUE:
            raise BadRequestError("{}: the value of {} has a NUL byte or is over {} "
                                  "bytes".format(what, name, MAX_VALUE),
                                  {"argument": what, "name": name})
    return dict(env)


def check_volumes(volumes: Dict[str, Any]) -> Dict[str, str]:
    """``volumes`` (name -> absolute path in the container) if each is well formed."""
    if not isinstance(volumes, dict):
        raise BadRequestError("volumes must be a map of NAME to a path in the container",
                              {"argument": "volumes"})
    if len(volumes) > MAX_VOLUMES:
        raise BadRequestError("at most {} volumes, not {}".format(MAX_VOLUMES, len(volumes)),
                              {"argument": "volumes"})
    seen: Dict[str, str] = {}
    for name, path in volumes.items():
        validate_name("volume", name)
        if (not isinstance(path, str) or not path.startswith("/") or "\0" in path
                or len(path) > 1024 or ".." in path.split("/")
                or not [part for part in path.split("/") if part not in ("", ".")]):
            raise BadRequestError(
                "volume {}: {!r} must be an absolute path in the container, without '..', "
                "and not / itself".format(name, str(path)[:200]),
                {"argument": "volumes", "name": name})
        normal = "/" + "/".join(part for part in path.split("/") if part not in ("", "."))
        if normal in seen:
            raise BadRequestError("volumes {} and {} both mount on {}".format(
                seen[normal], name, normal), {"argument": "volumes", "name": name})
        seen[normal] = name
    return {name: "/" + "/".join(p for p in path.split("/") if p not in ("", "."))
            for name, path in volumes.items()}


def check_command(argv: Any, what: str) -> List[str]:
    """A command as an argv list: 1 to MAX_ARGS strings without NUL, the first not empty."""
    if (not isinstance(argv, list) or not argv or len(argv) > MAX_ARGS
            or not all(isinstance(word, str) and "\0" not in word for word in argv)
            or not argv[0]):
        raise BadRequestError("{} must be an argv list of 1 to {} strings, the first naming "
                              "the program".format(what, MAX_ARGS), {"argument": what})
    return list(argv)


def check_labels(labels: Dict[str, Any]) -> Dict[str, str]:
    """``labels`` if there are at most MAX_LABELS, each name lowercase letters, digits and
    ``._/-`` (64 at most) and each value a string of at most MAX_LABEL_VALUE characters."""
    if len(labels) > MAX_LABELS:
        raise BadRequestError("labels: {} given, at most {}".format(len(labels), MAX_LABELS),
                              {"argument": "labels"})
    for name, value in labels.items():
        if not isinstance(name, str) or not _LABEL_NAME.match(name):
            raise BadRequestError("labels: {!r} is not a label name (lowercase letters, "
                                  "digits and ._/-, at most 64)".format(name),
                                  {"argument": "labels"})
        if not isinstance(value, str) or "\0" in value or len(value) > MAX_LABEL_VALUE:
            raise BadRequestError("labels: the value of {} must be a string of at most {} "
                                  "characters without NUL".format(name, MAX_LABEL_VALUE),
                                  {"argument": "labels", "name": name})
    return dict(labels)


def check_keep(keep: int) -> int:
    """How many releases an app keeps: 1 to MAX_KEEP."""
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= MAX_KEEP:
        raise BadRequestError("keep must be a whole number of releases from 1 to {}, not "
                              "{!r}".format(MAX_KEEP, keep), {"argument": "keep"})
    return keep


# -- reading and writing ----------------------------------------------------------------


def releases_dir(layout: Layout, app: str) -> str:
    """Where the release bundles of ``app`` lie."""
    return os.path.join(layout.app_dir(app), "releases")


def release_dir(layout: Layout, app: str, number: int) -> str:
    """The bundle directory of release ``number`` of ``app``."""
    return os.path.join(releases_dir(layout, app), str(number))


def secret_file(layout: Layout, app: str, number: int) -> str:
    """The secret store's file of one release."""
    return os.path.join(layout.secrets, app, str(number))


def volume_dir(layout: Layout, app: str, name: str) -> str:
    """A volume's directory on the node."""
    return os.path.join(layout.volumes, app, name)


def numbers(layout: Layout, app: str) -> List[int]:
    """The complete releases of ``app``, newest first (an unpack under way is not one)."""
    try:
        names = os.listdir(releases_dir(layout, app))
    except FileNotFoundError:
        return []
    found = [int(name) for name in names if name.isdigit() and str(int(name)) == name
             and os.path.isfile(os.path.join(releases_dir(layout, app), name, RELEASE))]
    return sorted(found, reverse=True)


def read(directory: str) -> Optional[Release]:
    """The release whose bundle is ``directory``; None if it is not a release's."""
    try:
        with open(os.path.join(directory, RELEASE), "rb") as source:
            value = json.loads(source.read().decode("utf-8"))
        return Release(
            app=str(value["app"]), number=int(value["release"]), directory=directory,
            image=str(value["image"]), sha256=str(value["sha256"]),
            created=float(value["created"]), env=dict(value.get("env") or {}),
            secrets=list(value.get("secrets") or []), volumes=dict(value.get("volumes") or {}),
            health=value.get("health"), release_command=value.get("release_command"),
            options=dict(value.get("options") or {}),
            labels=dict(value.get("labels") or {}))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(release: Release) -> None:
    """Write release.json into the release's (staging) directory, atomically."""
    value = {"app": release.app, "release": release.number, "image": release.image,
             "sha256": release.sha256, "created": release.created, "env": release.env,
             "secrets": sorted(release.secrets), "volumes": release.volumes,
             "health": release.health, "release_command": release.release_command,
             "options": release.options, "labels": release.labels}
    fs.atomic_write(os.path.join(release.directory, RELEASE),
                    json.dumps(value, sort_keys=True, indent=1).encode(), 0o600)


def write_secrets(layout: Layout, app: str, number: int, secrets: Dict[str, str]) -> None:
    """Store a release's secrets, root-only; nothing is written without any."""
    if not secrets:
        return
    directory = os.path.join(layout.secrets, app)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    data = b"".join("{}={}".format(name, value).encode("utf-8", "surrogateescape") + b"\0"
                    for name, value in sorted(secrets.items()))
    fs.atomic_write(secret_file(layout, app, number), data, 0o600)


def read_secrets(layout: Layout, app: str, number: int) -> Dict[str, str]:
    """A release's secrets from the store ({} if it has none)."""
    try:
        with open(secret_file(layout, app, number), "rb") as source:
            data = source.read()
    except FileNotFoundError:
        return {}
    pairs = (item.decode("utf-8", "surrogateescape").split("=", 1)
             for item in data.split(b"\0") if item)
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def read_app(layout: Layout, app: str) -> Dict[str, Any]:
    """The app's app.json ({} if it has none)."""
    try:
        with open(os.path.join(layout.app_dir(app), APP), "rb") as source:
            value = json.loads(source.read().decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_app(layout: Layout, app: str, value: Dict[str, Any]) -> None:
    """Replace the app's app.json atomically."""
    os.makedirs(layout.app_dir(app), mode=0o700, exist_ok=True)
    fs.atomic_write(os.path.join(layout.app_dir(app), APP),
                    json.dumps(value, sort_keys=True, indent=1).encode(), 0o600)


# -- the overlay ------------------------------------------------------------------------


def apply_overlay(plan: Dict[str, Any], release: Release, layout: Layout) -> None:
    """Put ``release``'s env, volumes and secrets (the store's file, never a value) on
    the plan made from its image's config.json."""
    process = plan["process"]
    process["env"] = [item for item in process["env"]
                      if item.split("=", 1)[0] not in release.env] + [
        "{}={}".format(name, value) for name, value in sorted(release.env.items())]
    # Parents first: /data after /data/sub would hide it.
    for name, path in sorted(release.volumes.items(), key=lambda item: (
            item[1].count("/"), item[1])):
        plan["mounts"].append({
            "destination": path, "type": "bind",
            "source": volume_dir(layout, release.app, name), "field": "volumes." + name,
            "in_bundle": None, "flags": 0, "data": "", "bind": True, "recursive": True,
            "remount_readonly": False, "propagation": 0, "setattr": [0, 0]})
    if release.secrets:
        plan["secrets"] = secret_file(layout, release.app, release.number)


def make_volumes(layout: Layout, release: Release, plan: Dict[str, Any]) -> None:
    """Create the release's volumes that do not exist yet, owned by the container's user
    (``plan``'s), and their mount points in the release's rootfs, walked without following
    symlinks: BadRequestError if a path goes through one, or is not a directory."""
    from vzslave.mounts import make_mount_point
    from vzslave.runio import RunnerError

    rootfs, uid, gid = plan["rootfs"], plan["process"]["uid"], plan["process"]["gid"]
    for name, path in sorted(release.volumes.items()):
        try:
            make_mount_point(rootfs, path, "volume {}".format(name))
        except RunnerError as exc:
            raise BadRequestError(exc.message, {"argument": "volumes", "name": name}) from exc
        except OSError as exc:
            raise BadRequestError("volume {} at {}: {}".format(
                name, path, exc.strerror), {"argument": "volumes", "name": name}) from exc
        directory = volume_dir(layout, release.app, name)
        if not os.path.isdir(directory):
            os.makedirs(os.path.dirname(directory), mode=0o700, exist_ok=True)
            staging = os.path.join(os.path.dirname(directory), ".{}.new".format(name))
            if os.path.lexists(staging):  # left by a killed deploy
                fs.remove_tree(staging)
            os.mkdir(staging, 0o755)
            os.chown(staging, uid, gid)
            os.rename(staging, directory)
