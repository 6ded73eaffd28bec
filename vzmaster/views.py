"""How the ``vzmaster`` command shows each node record: one function per record type.

Each gives a ``View``: the record's JSON object, named field by field here (the CLI's
schema: a node may add wire fields without changing what scripts read), its cells in
a table, and its text when shown alone. The column tuples name the tables' columns.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from vzmaster.output import View, table
from vzslave.records import (AppInfo, BundleInfo, ContainerStatus, ImageInfo, NodeFacts,
                              ReleaseInfo, VolumeInfo)

IMAGE_COLUMNS = ("name", "size", "format", "sha256", "created")
BUNDLE_COLUMNS = ("name", "image", "files", "bytes", "created")
STATUS_COLUMNS = ("name", "state", "pid", "uptime", "restarts", "runtime", "detail")
RELEASE_COLUMNS = ("release", "current", "image", "sha256", "created", "settings")
APP_COLUMNS = ("app", "current", "state", "releases", "keep", "volumes")
VOLUME_COLUMNS = ("app", "name", "bytes", "path")


def facts(facts: NodeFacts) -> View:
    """What hello says of a node: a line per fact."""
    fields: dict[str, Any] = {
        "protocol": facts.protocol, "version": facts.version, "hostname": facts.hostname,
        "kernel": facts.kernel, "arch": facts.arch, "init": facts.init,
        "python": facts.python, "root": facts.root, "uid": facts.uid,
        "free_bytes": facts.free_bytes, "free_inodes": facts.free_inodes,
        "formats": facts.formats, "mem_total": facts.mem_total,
        "mem_available": facts.mem_available}
    text = "\n".join("{:13} {}".format(key, value) for key, value in fields.items())
    return View(fields, {key: str(value) for key, value in fields.items()}, text)


def image(info: ImageInfo) -> View:
    """An image on a node: a row of ``images``; alone (pushed), name, size and sha256."""
    fields = {"name": info.name, "size": info.size, "sha256": info.sha256,
              "format": info.format, "created": info.created}
    row = {"name": info.name, "size": str(info.size), "format": info.format,
           "sha256": info.sha256[:12], "created": _when(info.created)}
    return View(fields, row, "{} {} sha256:{}".format(info.name, info.size, info.sha256))


def bundle(info: BundleInfo) -> View:
    """A bundle on a node: a row of ``bundles``; alone (unpacked), what it holds."""
    fields = {"name": info.name, "image": info.image, "sha256": info.sha256,
              "created": info.created, "files": info.files, "bytes": info.bytes,
              "setid_stripped": info.setid_stripped}
    row = {"name": info.name, "image": info.image, "files": str(info.files),
           "bytes": str(info.bytes), "created": _when(info.created)}
    stripped = info.setid_stripped
    note = " (setuid/setgid removed from {}{})".format(
        ", ".join(stripped[:3]), ", ..." if len(stripped) > 3 else "") if stripped else ""
    return View(fields, row, "{}: {} files, {} bytes{}".format(
        info.name, info.files, info.bytes, note))


def status(st: ContainerStatus) -> View:
    """Where a container stands: a row of a status table, alone too."""
    fields = {
        "name": st.name, "state": st.state, "pid": st.pid, "uptime": st.uptime,
        "restarts": st.restarts, "last_exit": st.last_exit, "last_error": st.last_error,
        "next_retry": st.next_retry, "supervisor": st.supervisor, "runtime": st.runtime,
        "entry": st.entry, "bundle": st.bundle, "log": st.log, "last_run": st.last_run,
        "warnings": st.warnings}
    detail = []
    if st.next_retry:
        detail.append("retry in {:.0f}s".format(max(st.next_retry - time.time(), 0)))
    if st.last_exit:
        detail.append("last " + st.last_exit)
    if st.last_error:
        detail.append(st.last_error)
    if st.state == "disabled":
        detail.append("entry disabled by the administrator; start --override restores it")
    row = {"name": st.name, "state": st.state, "pid": str(st.pid or "-"),
           "uptime": _duration(st.uptime), "restarts": str(st.restarts),
           "runtime": st.runtime, "detail": "; ".join(detail) or "-"}
    return View(fields, row)


def start_failure(st: ContainerStatus, log: Sequence[str]) -> View:
    """A started app that does not stay up: its status and the last lines of its log."""
    shown = status(st)
    text = "{}\n\nlast lines of its log:\n{}".format(
        table([shown.row], STATUS_COLUMNS), "\n".join("  " + line for line in log))
    return View(dict(shown.fields, log=list(log)), shown.row, text)


def release(info: ReleaseInfo) -> View:
    """A release of an app: a row of ``releases``; alone (deployed), what runs now."""
    fields = {"app": info.app, "release": info.release, "image": info.image,
              "sha256": info.sha256, "created": info.created, "current": info.current,
              "env": info.env, "secrets": info.secrets, "volumes": info.volumes,
              "health": info.health, "release_command": info.release_command}
    settings = []
    if info.env:
        settings.append("env " + ",".join(info.env))
    if info.secrets:
        settings.append("secrets " + ",".join(info.secrets))
    if info.volumes:
        settings.append("volumes " + ",".join(
            "{}:{}".format(name, path) for name, path in sorted(info.volumes.items())))
    if info.health:
        settings.append("health " + ",".join(
            "{}={}".format(key, value) for key, value in sorted(info.health.items())
            if key in ("tcp", "http", "cmd")))
    row = {"release": str(info.release), "current": "*" if info.current else "",
           "image": info.image, "sha256": info.sha256[:12], "created": _when(info.created),
           "settings": "; ".join(settings) or "-"}
    return View(fields, row, "{} release {} runs image {} (sha256:{})".format(
        info.app, info.release, info.image, info.sha256[:12]))


def app(info: AppInfo) -> View:
    """An app on a node: a row of ``apps``."""
    fields = {"app": info.app, "current": info.current, "releases": info.releases,
              "keep": info.keep, "state": info.state, "volumes": info.volumes}
    row = {"app": info.app, "current": str(info.current or "-"), "state": info.state,
           "releases": ",".join(map(str, info.releases)) or "-", "keep": str(info.keep),
           "volumes": ",".join(info.volumes) or "-"}
    return View(fields, row)


def volume(info: VolumeInfo) -> View:
    """A volume of an app: a row of ``volumes``."""
    fields = {"app": info.app, "name": info.name, "path": info.path, "bytes": info.bytes}
    return View(fields, {"app": info.app, "name": info.name, "bytes": str(info.bytes),
                         "path": info.path})


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
