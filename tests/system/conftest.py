"""Fixtures for system tests on "VPS in a box" test hosts (root only; see vzmaster.testing.box)."""

import os
import time
from pathlib import Path

import pytest

from vzmaster.testing.box import Hub, missing_requirements

HERE = Path(__file__).resolve().parent
ROOT = "/var/lib/vz"
INITTAB = "/etc/inittab"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "system: needs root and 'VPS in a box' test hosts (real sshd, real init)")


def pytest_collection_modifyitems(config, items):
    # Every test under tests/system, whoever writes it, gets the marker.
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.system)


def require_boxes(init="busybox"):
    """Skip (or, with VZ_REQUIRE_SYSTEM=1, fail) unless boxes with this init can run."""
    require(missing_requirements(init), f"VPS-in-a-box tests cannot run ({init})")


def require(reasons, what):
    """Skip (or, with VZ_REQUIRE_SYSTEM=1, fail) saying ``what`` and why, if any reasons."""
    if not reasons:
        return
    message = f"{what}: " + "; ".join(reasons)
    if os.environ.get("VZ_REQUIRE_SYSTEM") == "1":
        # CI sets it: a silently skipped system suite would pass for the wrong reason.
        pytest.fail(message + " [VZ_REQUIRE_SYSTEM=1]", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def hub():
    """The run's hub: private bridge netns, keys; closes every box it made at the end."""
    require_boxes("busybox")
    with Hub() as the_hub:
        yield the_hub


@pytest.fixture(params=["busybox", "sysv"], ids=["busybox", "sysv"])
def box(request, hub):
    """A started box with each init, closed after the test."""
    require_boxes(request.param)
    the_box = hub.box(init=request.param)
    yield the_box
    the_box.close()


@pytest.fixture
def make_box(hub):
    """Factory: make_box(init="busybox", inittab=[...], disk_size="64m", ...) -> started box."""
    boxes = []

    def make(init="busybox", **kwargs):
        require_boxes(init)
        the_box = hub.box(init=init, **kwargs)
        boxes.append(the_box)
        return the_box

    yield make
    for the_box in boxes:
        the_box.close()


@pytest.fixture
def digests(tmp_path):
    """A digest cache private to the test."""
    from vzmaster.digests import DigestCache
    return DigestCache(str(tmp_path / "digests.json"))


def connect(box, digests, via="paramiko", **options):
    """A Client to ``box`` over its real sshd, by paramiko or by the OpenSSH client."""
    from vzmaster import Client
    opts = box.ssh_options()
    options.setdefault("known_hosts", opts["known_hosts"])
    if via == "paramiko":
        options.setdefault("sock", box.connect())
        options.setdefault("ssh_config", None)
    else:
        options["ssh_program"] = opts["ssh_program"] + ["-F", "none"]
    return Client(opts["host"], user="root", key_filename=opts["key_filename"], via=via,
                  digests=digests, **options)


def wait_for(predicate, timeout=15.0, interval=0.05, what="condition"):
    """Return predicate()'s first truthy value, or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def deploy(box, digests, tmp_path, name, args, *members, **config):
    """Push and unpack a busybox image running ``args`` as bundle ``name``."""
    from tests import tarballs as tb
    path = tmp_path / (name + ".tar")
    path.write_bytes(tb.busybox_image(args, *members, **config))
    with connect(box, digests) as node:
        node.upload_image(str(path), name + ".tar")
        node.unpack(name + ".tar", name)


def proc_status(box, pid):
    text = box.exec(["cat", "/proc/{}/status".format(pid)]).stdout.decode()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def box_pids(box, rootfs):
    """Pids in the box whose root directory is ``rootfs``, by device and inode: a process
    that pivoted into it shows readlink only "/"."""
    out = box.exec(["sh", "-c", 'want=$(stat -c %d:%i "$0" 2>/dev/null) || exit 0; '
                    "for p in /proc/[0-9]*; do r=$(stat -L -c %d:%i $p/root 2>/dev/null) && "
                    '[ "$r" = "$want" ] && echo ${p#/proc/}; done; true', rootfs]).stdout
    return [int(p) for p in out.split()]


def box_mounts(box, rootfs):
    info = box.read_file("/proc/1/mountinfo").decode()
    return [line.split()[4] for line in info.splitlines() if line.split()[4].startswith(rootfs)]


def admin_lines(box):
    return [line for line in box.read_file(INITTAB).splitlines(keepends=True)
            if b"/bin/vzrun " not in line]
