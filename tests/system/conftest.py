"""Fixtures for system tests on "VPS in a box" test hosts (root only; see vzmaster.box)."""

import os
import time
from pathlib import Path

import pytest

from vzmaster.box import Hub, missing_requirements

HERE = Path(__file__).resolve().parent


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
    reasons = missing_requirements(init)
    if not reasons:
        return
    message = f"VPS-in-a-box tests cannot run ({init}): " + "; ".join(reasons)
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
