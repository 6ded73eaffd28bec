"""The bundle store: unpack into a fresh tree, publish by one rename."""

import os

import pytest

from tests import tarballs as tb
from tests.conftest import put, requires_root, sample_image
from vzslave.bundles import BundleStore
from vzslave.errors import (
    BadImageError,
    BusyError,
    NoSuchBundleError,
    NoSuchImageError,
    PermissionDeniedError,
    UnsafeImageError,
)
from vzslave.images import ImageStore


@pytest.fixture
def images(layout, limits):
    return ImageStore(layout, limits)


@pytest.fixture
def bundles(layout, limits, images):
    return BundleStore(layout, limits, images)


def app_file(bundles, name="app"):
    with open(os.path.join(bundles.path(name), "rootfs", "bin", "app"), "rb") as source:
        return source.read()


def test_an_image_unpacks_into_a_runc_style_bundle(images, bundles):
    put(images, "a.tgz", sample_image(b"v1"))
    info = bundles.unpack("a.tgz", "app")
    path = bundles.path("app")
    assert sorted(os.listdir(path)) == [".vzbundle.json", "config.json", "rootfs"]
    assert app_file(bundles) == b"v1"
    assert (info.name, info.image, info.files) == ("app", "a.tgz", 6)
    assert bundles.list() == [info]


def test_unpacking_again_replaces_the_bundle_and_removes_the_old_tree(images, bundles, layout):
    put(images, "a.tgz", sample_image(b"v1"))
    put(images, "b.tgz", sample_image(b"v2"))
    bundles.unpack("a.tgz", "app")
    bundles.unpack("b.tgz", "app")
    assert app_file(bundles) == b"v2"
    assert len(os.listdir(layout.trees)) == 1


def test_a_hostile_image_leaves_the_old_bundle_and_no_tree(images, bundles, layout):
    put(images, "a.tgz", sample_image(b"v1"))
    bundles.unpack("a.tgz", "app")
    put(images, "evil.tgz", tb.make_tar(tb.bundle(tb.file("rootfs/../x", b"!")), fmt="tar.gz"))
    with pytest.raises(UnsafeImageError):
        bundles.unpack("evil.tgz", "app")
    assert app_file(bundles) == b"v1"
    assert len(os.listdir(layout.trees)) == 1


def test_an_image_that_is_not_a_tarball_is_a_bad_image(images, bundles):
    put(images, "x.tar", b"just some bytes, not a tarball")
    with pytest.raises(BadImageError):
        bundles.unpack("x.tar", "app")


def test_unpacking_a_missing_image_says_so(bundles):
    with pytest.raises(NoSuchImageError):
        bundles.unpack("nope.tgz", "app")


def test_removing_a_bundle_removes_its_tree(images, bundles, layout):
    put(images, "a.tgz", sample_image())
    bundles.unpack("a.tgz", "app")
    bundles.remove("app")
    assert bundles.list() == [] and os.listdir(layout.trees) == []


def test_removing_a_missing_bundle_says_so(bundles):
    with pytest.raises(NoSuchBundleError):
        bundles.remove("app")


def test_a_tree_left_by_a_killed_unpack_is_collected_by_the_next_one(images, bundles, layout):
    put(images, "a.tgz", sample_image())
    os.makedirs(os.path.join(layout.trees, "app.deadbeef", "rootfs"))
    bundles.unpack("a.tgz", "app")
    assert len(os.listdir(layout.trees)) == 1


def test_trees_of_other_bundles_are_left_alone(images, bundles, layout):
    put(images, "a.tgz", sample_image())
    bundles.unpack("a.tgz", "app")
    bundles.unpack("a.tgz", "app.v2")
    bundles.unpack("a.tgz", "app")
    assert sorted(b.name for b in bundles.list()) == ["app", "app.v2"]
    assert len(os.listdir(layout.trees)) == 2


@requires_root
def test_a_bundle_with_a_mount_inside_is_not_removed(images, bundles, tmp_path):
    import subprocess
    put(images, "a.tgz", sample_image())
    bundles.unpack("a.tgz", "app")
    target = os.path.join(bundles.path("app"), "rootfs", "tmp")
    subprocess.run(["mount", "-t", "tmpfs", "vzt", target], check=True)
    try:
        with pytest.raises(BusyError, match="mounts"):
            bundles.remove("app")
        assert bundles.list()[0].name == "app"
    finally:
        subprocess.run(["umount", target], check=True)


def test_keeping_setid_bits_needs_root(images, bundles, monkeypatch):
    put(images, "a.tgz", sample_image())
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(PermissionDeniedError):
        bundles.unpack("a.tgz", "app", keep_setid=True)


def test_a_config_outside_the_nodes_policy_is_refused_at_unpack_and_leaves_nothing(
        images, bundles, layout):
    """When the node's policy forbids what an image's config.json asks (here a bind of
    the node's /etc), unpack refuses it naming the field, and the old bundle stays."""
    import json
    from vzslave.errors import PolicyDeniedError
    put(images, "a.tgz", sample_image(b"v1"))
    bundles.unpack("a.tgz", "app")
    with open(layout.policy, "w") as out:
        json.dump({"bind_sources": ["/srv"]}, out)
    config = tb.config_json(mounts=[{"destination": "/x", "type": "bind", "source": "/etc"}])
    put(images, "binds.tar", tb.make_tar(tb.bundle(tb.directory("rootfs/bin"),
                                                   config=config)))
    with pytest.raises(PolicyDeniedError) as raised:
        bundles.unpack("binds.tar", "app")
    assert raised.value.details == {"field": "mounts[0].source", "policy": "bind_sources"}
    assert app_file(bundles) == b"v1" and len(os.listdir(layout.trees)) == 1
