"""A container's exec plan as vzslave writes it at start: ROOT/containers/NAME/plan.marshal.

The runner reads it at every spawn (marshal: json would cost it ~10 ms). vzslave makes it
from the bundle's config.json (vzslave/oci.py), checked against the node's policy
(vzslave/policy.py), with the container's settings (runtime, log limits, monitor) and
what this node can do: pivot_root into the rootfs (else a chroot, warned, where the
policy allows it) and the capabilities of its bounding set.
"""

import binascii
import marshal
import os
import shutil
import subprocess
from typing import Any, Dict, List, Optional

from vzslave import fs, linux, mounts, oci, procs, releases
from vzslave.config import Layout
from vzslave.errors import (BadRequestError, BusyError, NoRuntimeError, NoSuchBundleError,
                            PolicyDeniedError)
from vzslave.policy import load_policy
from vzslave.runio import RunnerError, os_message, read_run_record, read_to_end, record_number
from vzslave.runner import pivot_into, runtime_command
from vzslave.settings import Settings

PLAN = "plan.marshal"  # in the container's state directory
RUNTIMES = ("builtin", "runc", "crun")
MAX_RUNTIME_ARGS = 16
BACKOFF = {"initial": 1.0, "max": 60.0, "stable": 30.0}
_RUNTIME_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Plan = Dict[str, Any]


def check_runtime_args(args: List[str]) -> List[str]:
    """Global options for runc or crun (e.g. ``--cgroup-manager=disabled``).

    Only ``--name`` or ``--name=value``: a word that is not an option could turn
    ``runc run`` into another command, and the same options go before ``delete``.
    """
    if len(args) > MAX_RUNTIME_ARGS:
        raise BadRequestError("at most {} runtime_args, not {}".format(
            MAX_RUNTIME_ARGS, len(args)))
    for arg in args:
        if (not isinstance(arg, str) or not arg.startswith("--") or len(arg) < 3
                or len(arg) > 4096 or "\0" in arg):
            raise BadRequestError("runtime_args must be global options written as --name "
                                  "or --name=value, not {!r}".format(arg),
                                  {"field": "runtime_args"})
    return list(args)


def make_plan(layout: Layout, name: str, tree: str, settings: Settings) -> Plan:
    """The plan of container ``name`` running the bundle ``tree`` with ``settings``.

    Raises NoSuchBundleError, BadConfigError, PolicyDeniedError, BadRequestError (a
    runtime vz does not know) or NoRuntimeError (one this node lacks).
    """
    if not os.path.isdir(tree):
        raise NoSuchBundleError("no bundle named {!r} on this node: unpack an image "
                                "into it first".format(name))
    config = oci.load_config(tree)
    policy = load_policy(layout.policy)
    policy.check_config(config, tree)  # first: a refusal names the policy's field
    plan = oci.build_plan(config, tree, name)
    release = releases.read(tree)
    if release is not None:  # an app's release: its env, volumes and secrets on top
        releases.apply_overlay(plan, release, layout)
        releases.make_volumes(layout, release, plan)
    plan["store"] = [layout.trees, layout.apps]  # the images' files: no bind source
    mounts.check_bind_sources(plan)
    options = settings.options
    kind = options.runtime
    if kind not in RUNTIMES:
        raise BadRequestError("runtime must be one of {}, not {!r}".format(
            ", ".join(RUNTIMES), kind))
    policy.check_start(kind, options.runtime_args)
    if kind != "builtin" and release is not None and (
            release.env or release.secrets or release.volumes):
        # runc and crun read config.json, which vz never rewrites: the overlay would be
        # lost, and secrets written into a config would leave the secret store.
        raise BadRequestError("the env, secrets and volumes of an app's release need "
                              "runtime builtin; {} runs config.json as the image has "
                              "it".format(kind), {"argument": "runtime"})
    path = None
    if kind != "builtin":
        path = shutil.which(kind, path=_RUNTIME_PATH)
        if path is None:
            raise NoRuntimeError("container {!r} is set to run under {}, which is not "
                                 "installed on this node; install it or start with "
                                 "runtime builtin".format(name, kind))
    else:
        if not isinstance(config["process"].get("capabilities"), dict):
            _fit_default_capabilities(plan)
        _choose_entry(plan, policy.chroot_fallback)
    plan.update(
        runtime=kind, runtime_path=path, runtime_args=options.runtime_args if path else [],
        state_dir=layout.container_dir(name),
        # Tells a switched-to release's first spawn from a respawn (runner.pace_restarts).
        generation=binascii.hexlify(os.urandom(6)).decode(),
        log={"path": layout.log_file(name), "max_bytes": options.log_max,
             "keep": options.log_keep, "syslog": options.syslog},
        backoff=dict(BACKOFF),
        # A monitor of ours stays as the app's parent: a hard cap on the log (it
        # pumps the output), exit codes in status, orphans ended when the app ends.
        # On by default (DEVELOPERS.md, "A monitor beside each app"); off, nothing of ours
        # stays beside the app, and only sessions cut its log back.
        monitor=options.monitor)
    return plan


def write_plan(directory: str, plan: Plan) -> None:
    """Write ``plan`` where the runner reads it, atomically."""
    fs.atomic_write(os.path.join(directory, PLAN), marshal.dumps(plan), 0o600)


def load_plan(directory: str) -> Optional[Plan]:
    """The plan in ``directory``; None if there is none that reads."""
    try:
        with open(os.path.join(directory, PLAN), "rb") as f:
            plan = marshal.load(f)
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return plan if isinstance(plan, dict) else None


def end(plan: Plan, layout: Layout, grace: float) -> None:
    """End every process of the started plan's container (TERM, KILL after ``grace``),
    then release it; BusyError naming what stays (stuck processes, busy mounts)."""
    name = plan["name"]
    record = read_run_record(os.path.join(layout.container_dir(name), "run"))
    # A runner spawned by init but not yet in its rootfs: "vzrun\0NAME\0".
    command = "{}\0{}\0".format(layout.launcher, name).encode()
    survivors = procs.end_container(plan["rootfs"], record_number(record, "pid"),
                                    record.get("ticks"), command, grace)
    if survivors:
        raise BusyError("container {!r}: processes {} survive SIGKILL (stuck in the "
                        "kernel?); stop it again later".format(name, survivors),
                        {"pids": survivors})
    stuck = release(plan)
    if stuck:
        raise BusyError("container {!r} is stopped, but these mounts could not be "
                        "released: {}".format(name, ", ".join(stuck)), {"mounts": stuck})


def replace(old: Plan, layout: Layout, grace: float, generation: str, written: int) -> None:
    """End the instance of ``old``, the plan a switch replaced with the plan of
    ``generation``, written at ``written`` (procs.boot_ticks), then release its mounts.

    Ended (TERM, KILL after ``grace``): what runs in its rootfs, the process group of the
    run record's pid while that record is still the old instance's, and a ``vzrun NAME``
    runner started in a tick before ``written`` (it may have read the old plan, and not
    be in its rootfs yet). A runner started later is the new instance: init respawns it
    meanwhile.
    """
    name = old["name"]
    command = "{}\0{}\0".format(layout.launcher, name).encode()
    record = read_run_record(os.path.join(layout.container_dir(name), "run"))
    pid = record_number(record, "pid")
    groups = []
    if (pid > 0 and record.get("generation", "") != generation
            and procs.same_process(pid, record.get("ticks"))):
        group = procs.process_group(pid)
        groups = [group] if group else []

    def find() -> Dict[int, int]:
        found = procs.container_processes(old["rootfs"], groups)
        found.update(procs.started_before(command, written))
        return found

    survivors = procs.end_processes(find, grace, poll=0.01)
    if survivors:
        raise BusyError("container {!r}: processes {} of the replaced release survive "
                        "SIGKILL (stuck in the kernel?)".format(name, survivors),
                        {"pids": survivors})
    stuck = mounts.release(old)
    if stuck:
        raise BusyError("container {!r} runs its new release, but these mounts of the "
                        "replaced one could not be released: {}".format(
                            name, ", ".join(stuck)), {"mounts": stuck})


def release(plan: Plan) -> List[str]:
    """Undo what a started plan holds outside its processes: runc's or crun's container
    deleted, the mounts released (mounts.release); the mount points that remain."""
    if plan["runtime"] != "builtin" and plan.get("runtime_path"):
        subprocess.run(runtime_command(plan, "delete", "--force", "vz-" + plan["name"]),
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30, check=False)
    return mounts.release(plan)


def _choose_entry(plan: Plan, fallback: bool) -> None:
    """pivot_root where the node can; else chroot (warned, without CAP_SYS_CHROOT)."""
    why = probe_pivot_root(plan["rootfs"])
    if why is None:
        return
    if not fallback:
        raise PolicyDeniedError(
            "this node cannot enter containers with pivot_root ({}), and its policy "
            "forbids the chroot fallback".format(why),
            {"field": None, "policy": "chroot_fallback"})
    plan["enter"] = "chroot"
    # chroot() again is how a root app leaves a chroot: take the means away.
    chroot_cap = oci.CAPABILITIES["CAP_SYS_CHROOT"]
    for numbers in plan["process"]["capabilities"].values():
        if chroot_cap in numbers:
            numbers.remove(chroot_cap)
    plan["warnings"].append(
        "this node cannot pivot_root into the rootfs ({}): the app runs in a plain "
        "chroot, without CAP_SYS_CHROOT (docs/security.md)".format(why))


def probe_pivot_root(rootfs: str) -> "Optional[str]":
    """None if a container can enter ``rootfs`` with pivot_root on this node; else why not.

    Tried for real in a throwaway child: a private mount namespace, the rootfs bound
    onto itself, pivot_root, the old root detached. It fails on kernels or guests that
    refuse new mount namespaces (some OpenVZ 6 guests) or where the root is an
    initramfs (pivot_root cannot move it).
    """
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child; the parent reads its verdict
        try:
            os.close(reader)
            linux.unshare(linux.CLONE_NEWNS)
            linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
            linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
            pivot_into(rootfs)
            os.write(writer, b"ok")
        except BaseException as exc:
            text = exc.message if isinstance(exc, RunnerError) else (
                os_message(exc) if isinstance(exc, OSError) else repr(exc))
            os.write(writer, text.encode("utf-8", "replace")[:1000])
        finally:
            os._exit(0)
    os.close(writer)
    try:
        verdict = read_to_end(reader)
    finally:
        os.close(reader)
        os.waitpid(child, 0)
    if verdict == b"ok":
        return None
    return verdict.decode("utf-8", "replace") or "the probe process died"


def _fit_default_capabilities(plan: Plan) -> None:
    """vz's default set, less what this node's bounding set lacks (some guests), warned.

    Asked for by name, a capability the node lacks fails the spawn, as runc's create
    fails; the defaults were asked for by nobody.
    """
    bounding = _bounding_set()
    caps = plan["process"]["capabilities"]
    missing = sorted({cap for numbers in caps.values() for cap in numbers
                      if not bounding >> cap & 1})
    if not missing:
        return
    for key, numbers in caps.items():
        caps[key] = [cap for cap in numbers if cap not in missing]
    plan["warnings"].append(
        "this node's bounding set lacks {}: the app runs without {} of vz's default "
        "capabilities".format(", ".join(linux.cap_name(cap) for cap in missing),
                              "it" if len(missing) == 1 else "them"))


def _bounding_set() -> int:
    """The capability bounding set vzslave runs with: the node's, as a mask."""
    try:
        with open("/proc/self/status", "rb") as source:
            for line in source:
                if line.startswith(b"CapBnd:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return (1 << 64) - 1  # unknown: let the spawn say what it cannot have
