"""A container's exec plan: made from the bundle, the policy and the settings; written,
read back, released."""

import json
import os

import pytest

from tests import tarballs as tb
from tests.conftest import requires_root
from vzslave import mounts, oci, plans
from vzslave.errors import (BadRequestError, NoRuntimeError, NoSuchBundleError,
                            PolicyDeniedError)
from vzslave.settings import Settings


@pytest.fixture
def tree(layout):
    """A bundle tree: a rootfs with an empty bin/, and a minimal config.json."""
    path = os.path.join(layout.trees, "app.0001")
    tb.extract_image(tb.make_tar(tb.bundle(tb.directory("rootfs/bin"),
                                           config=tb.config_json())), path)
    return path


@pytest.fixture
def can_pivot(monkeypatch):
    monkeypatch.setattr(plans, "probe_pivot_root", lambda rootfs: None)


def test_a_plan_carries_the_settings_and_where_the_runner_keeps_its_state(layout, tree,
                                                                        can_pivot):
    settings = Settings({"log_max": 4096, "log_keep": 1, "syslog": True, "monitor": False})
    plan = plans.make_plan(layout, "app", tree, settings)
    assert plan["runtime"] == "builtin" and plan["runtime_path"] is None
    assert plan["state_dir"] == layout.container_dir("app")
    assert plan["store"] == [layout.trees, layout.apps]
    assert plan["log"] == {"path": os.path.join(layout.logs, "app.log"), "max_bytes": 4096,
                           "keep": 1, "syslog": True}
    assert plan["backoff"] == plans.BACKOFF and plan["monitor"] is False


def test_a_plan_has_a_monitor_unless_asked_otherwise(layout, tree, can_pivot):
    assert plans.make_plan(layout, "app", tree, Settings())["monitor"] is True


def test_a_missing_tree_is_no_bundle(layout, can_pivot):
    with pytest.raises(NoSuchBundleError, match="unpack an image"):
        plans.make_plan(layout, "app", os.path.join(layout.trees, "gone"), Settings())


def test_a_runtime_vz_does_not_know_is_refused(layout, tree, can_pivot):
    with pytest.raises(BadRequestError, match="runtime must be one of"):
        plans.make_plan(layout, "app", tree, Settings({"runtime": "kata"}))


def test_a_runtime_the_node_lacks_is_refused(layout, tree, monkeypatch):
    monkeypatch.setattr(plans.shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(NoRuntimeError, match="crun, which is not installed"):
        plans.make_plan(layout, "app", tree, Settings({"runtime": "crun"}))


def test_runtime_args_go_only_to_runc_or_crun(layout, tree, monkeypatch, can_pivot):
    monkeypatch.setattr(plans.shutil, "which", lambda *args, **kwargs: "/usr/bin/runc")
    args = {"runtime_args": ["--root=/run/x"]}
    assert plans.make_plan(layout, "app", tree, Settings(dict(args, runtime="runc")))[
        "runtime_args"] == ["--root=/run/x"]
    assert plans.make_plan(layout, "app", tree, Settings(args))["runtime_args"] == []


@pytest.mark.parametrize("args", [["delete"], ["--root", "/x"], ["-"], ["--"],
                                  ["--a\0b"], ["--x"] * 17])
def test_runtime_args_must_be_global_options(args):
    with pytest.raises(BadRequestError, match="runtime_args"):
        plans.check_runtime_args(args)


def test_runtime_args_written_as_options_are_kept():
    assert plans.check_runtime_args(["--cgroup-manager=disabled", "--debug"]) == [
        "--cgroup-manager=disabled", "--debug"]


def test_a_plan_written_is_read_back(tmp_path):
    plan = {"version": 1, "name": "app", "mounts": [{"flags": 3}]}
    plans.write_plan(str(tmp_path), plan)
    assert plans.load_plan(str(tmp_path)) == plan
    assert oct(os.stat(str(tmp_path / plans.PLAN)).st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("data", [None, b"", b"\x00garbage", b"\xe9\x00\x00\x00\x00"])
def test_no_plan_or_one_that_does_not_read_is_none(tmp_path, data):
    if data is not None:
        (tmp_path / plans.PLAN).write_bytes(data)
    assert plans.load_plan(str(tmp_path)) is None


def test_a_node_that_cannot_pivot_root_gets_a_chroot_without_cap_sys_chroot(layout, tree,
                                                                           monkeypatch):
    monkeypatch.setattr(plans, "probe_pivot_root", lambda rootfs: "EINVAL")
    plan = plans.make_plan(layout, "app", tree, Settings())
    chroot_cap = oci.CAPABILITIES["CAP_SYS_CHROOT"]
    assert plan["enter"] == "chroot"
    assert all(chroot_cap not in caps for caps in plan["process"]["capabilities"].values())
    assert any("cannot pivot_root into the rootfs (EINVAL)" in w for w in plan["warnings"])


def test_the_policy_can_forbid_the_chroot_fallback(layout, tree, monkeypatch):
    monkeypatch.setattr(plans, "probe_pivot_root", lambda rootfs: "EINVAL")
    with open(layout.policy, "w") as out:
        json.dump({"chroot_fallback": False}, out)
    with pytest.raises(PolicyDeniedError):
        plans.make_plan(layout, "app", tree, Settings())


def test_releasing_a_runc_plan_deletes_its_runc_container_then_the_mounts(monkeypatch):
    calls = []
    monkeypatch.setattr(plans.subprocess, "run", lambda argv, **kwargs: calls.append(argv))
    monkeypatch.setattr(mounts, "release", lambda plan: calls.append("release") or ["/m"])
    plan = {"name": "app", "runtime": "runc", "runtime_path": "/usr/bin/runc",
            "runtime_args": ["--root=/run/x"], "rootfs": "/r", "state_dir": "/s"}
    assert plans.release(plan) == ["/m"]
    assert calls == [["/usr/bin/runc", "--root=/run/x", "delete", "--force", "vz-app"],
                     "release"]


def test_releasing_a_builtin_plan_only_releases_its_mounts(monkeypatch):
    monkeypatch.setattr(plans.subprocess, "run", lambda *a, **k: pytest.fail("ran runc"))
    monkeypatch.setattr(mounts, "release", lambda plan: [])
    assert plans.release({"name": "app", "runtime": "builtin", "runtime_path": None}) == []


@requires_root
def test_the_probe_enters_a_real_rootfs_with_pivot_root(tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    assert plans.probe_pivot_root(str(rootfs)) is None


@requires_root
def test_the_probe_says_why_it_cannot_enter(tmp_path):
    assert "No such file or directory" in plans.probe_pivot_root(str(tmp_path / "missing"))
