"""The container store over a fake init: entries, settings, disabled detection, repair."""

import json
import marshal
import os
import signal
import subprocess

import pytest

from tests import tarballs as tb
from vzslave import containers as ct, oci, plans, procs, supervision
from vzslave.bundles import BundleStore
from vzslave.errors import (BadRequestError, DisabledByAdminError, NoRuntimeError,
                            NoSuchContainerError, PolicyDeniedError)
from vzslave.images import ImageStore
from vzslave.inittab import Dialect

ADMIN = "::sysinit:/etc/init.d/rcS\n::respawn:/sbin/getty 38400 tty1\n"


@pytest.fixture
def node(layout, limits, tmp_path, monkeypatch):
    """Containers over a temp inittab; reloads and mount work are recorded, not done."""
    inittab = tmp_path / "inittab"
    inittab.write_text(ADMIN)
    calls = []
    monkeypatch.setattr(ct.mounts, "prepare", lambda plan: calls.append("prepare"))
    monkeypatch.setattr(ct.mounts, "release", lambda plan: calls.append("release") or [])
    tree = os.path.join(layout.trees, "app.0001")
    tb.extract_image(tb.make_tar(tb.bundle(tb.directory("rootfs/bin"),
                                           config=tb.config_json())), tree)
    os.symlink(".trees/app.0001", os.path.join(layout.bundles, "app"))
    bundles = BundleStore(layout, limits, ImageStore(layout, limits))
    store = ct.Containers(layout, bundles, lambda: supervision.Supervision(
        "busybox", str(inittab), Dialect.BUSYBOX, lambda: calls.append("reload")))
    bundles.in_use = store.trees_in_use
    store.calls = calls
    store.inittab = inittab
    return store


def test_start_adds_one_entry_writes_the_plan_and_reloads_init(node, layout):
    status = node.start("app", wait=False)
    assert status.state == "starting"
    assert node.inittab.read_text() == ADMIN + "::respawn:{} app\n".format(layout.launcher)
    with open(os.path.join(layout.container_dir("app"), "plan.marshal"), "rb") as f:
        plan = marshal.load(f)
    assert plan["runtime"] == "builtin" and plan["rootfs"].endswith("app.0001/rootfs")
    assert node.calls == ["prepare", "reload"]
    assert os.access(layout.launcher, os.X_OK)


def test_starting_a_started_container_adds_no_second_entry(node):
    node.start("app", wait=False)
    node.start("app", wait=False)
    assert node.inittab.read_text().count("vzrun app") == 1


def test_stop_removes_exactly_the_entry(node):
    node.start("app", wait=False)
    assert node.stop("app", grace=0.1).state == "stopped"
    assert node.inittab.read_text() == ADMIN
    assert node.calls[-2:] == ["reload", "release"]


def test_an_entry_commented_out_by_the_admin_is_disabled_and_not_restored(node):
    node.start("app", wait=False)
    entry = "::respawn:{} app".format(node.layout.launcher)
    node.inittab.write_text(node.inittab.read_text().replace(entry, "#" + entry))
    assert node.status("app")[0].state == "disabled"
    with pytest.raises(DisabledByAdminError):
        node.start("app", wait=False)
    assert "#::respawn:" in node.inittab.read_text()
    node.start("app", override=True, wait=False)
    assert node.inittab.read_text().count("\n::respawn:" + node.layout.launcher) == 1


def test_an_entry_deleted_by_the_admin_is_disabled(node):
    node.start("app", wait=False)
    node.inittab.write_text(ADMIN)
    assert node.status("app")[0].state == "disabled"


def test_a_start_cut_short_before_the_inittab_is_rolled_back_by_the_next_request(node,
                                                                                 layout):
    os.makedirs(layout.container_dir("app"))
    with open(os.path.join(layout.container_dir("app"), "settings.json"), "w") as f:
        json.dump({"wanted": "running", "starting": True, "id": "v000"}, f)
    assert node.status("app")[0].state == "stopped"
    assert node.inittab.read_text() == ADMIN
    with open(os.path.join(layout.container_dir("app"), "settings.json")) as f:
        left = json.load(f)
    assert "starting" not in left and "stopping" not in left  # no repair to repeat


def test_a_started_containers_tree_survives_a_new_unpack_of_its_bundle(node, layout):
    node.start("app", wait=False)
    assert node.trees_in_use() == {os.path.realpath(os.path.join(layout.trees, "app.0001"))}
    os.makedirs(os.path.join(layout.trees, "app.0002"))
    os.unlink(os.path.join(layout.bundles, "app"))
    os.symlink(".trees/app.0002", os.path.join(layout.bundles, "app"))
    node.bundles.collect_garbage("app")
    assert sorted(os.listdir(layout.trees)) == ["app.0001", "app.0002"]
    node.stop("app", grace=0.1)
    assert os.listdir(layout.trees) == ["app.0002"]


def test_a_runtime_the_node_lacks_is_refused(node, monkeypatch):
    monkeypatch.setattr(plans.shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(NoRuntimeError):
        node.start("app", runtime="crun", wait=False)


def test_runtime_args_are_kept_in_the_plan_of_a_runc_container(node, layout, monkeypatch):
    monkeypatch.setattr(plans.shutil, "which", lambda *args, **kwargs: "/usr/bin/runc")
    node.start("app", runtime="runc", runtime_args=["--root=/run/vz-runc"], wait=False)
    with open(os.path.join(layout.container_dir("app"), "plan.marshal"), "rb") as f:
        assert marshal.load(f)["runtime_args"] == ["--root=/run/vz-runc"]


@pytest.mark.parametrize("args", [["delete"], ["--root", "/x"], ["-"], ["--"],
                                  ["--a\0b"], ["--x"] * 17])
def test_runtime_args_that_are_not_global_options_are_refused(node, args):
    with pytest.raises(BadRequestError, match="runtime_args"):
        node.start("app", runtime="runc", runtime_args=args, wait=False)
    assert "vzrun" not in node.inittab.read_text()


def test_status_of_an_unknown_container_is_refused(node):
    with pytest.raises(NoSuchContainerError):
        node.status("ghost")


# -- containment choices ------------------------------------------------------------

def saved_plan(layout):
    with open(os.path.join(layout.container_dir("app"), "plan.marshal"), "rb") as f:
        return marshal.load(f)


def test_a_node_that_can_pivot_root_enters_containers_with_it(node, layout, monkeypatch):
    monkeypatch.setattr(plans, "probe_pivot_root", lambda rootfs: None)
    status = node.start("app", wait=False)
    assert saved_plan(layout)["enter"] == "pivot_root" and status.warnings == []


def test_a_node_that_cannot_pivot_root_falls_back_to_chroot_without_cap_sys_chroot(
        node, layout, monkeypatch):
    monkeypatch.setattr(plans, "probe_pivot_root", lambda rootfs: "unshare: not permitted")
    status = node.start("app", wait=False)
    plan = saved_plan(layout)
    assert plan["enter"] == "chroot"
    chroot_cap = oci.CAPABILITIES["CAP_SYS_CHROOT"]
    assert all(chroot_cap not in caps for caps in plan["process"]["capabilities"].values())
    assert any("cannot pivot_root" in w and "unshare: not permitted" in w
               for w in status.warnings)
    assert node.status("app")[0].warnings == status.warnings


def test_the_policy_can_forbid_the_chroot_fallback(node, layout, monkeypatch):
    monkeypatch.setattr(plans, "probe_pivot_root", lambda rootfs: "EINVAL")
    with open(layout.policy, "w") as out:
        json.dump({"chroot_fallback": False}, out)
    with pytest.raises(PolicyDeniedError) as raised:
        node.start("app", wait=False)
    assert raised.value.details["policy"] == "chroot_fallback"
    assert "vzrun" not in node.inittab.read_text()


def test_a_config_outside_the_policy_is_refused_at_start(node, layout):
    with open(layout.policy, "w") as out:
        json.dump({"capabilities": ["CAP_CHOWN"]}, out)
    with pytest.raises(PolicyDeniedError, match="process.capabilities"):
        node.start("app", wait=False)
    assert "vzrun" not in node.inittab.read_text()


# -- init reloads, full disks, forgetting ---------------------------------------------

def test_a_reload_left_owed_by_a_killed_session_is_made_by_the_next_request(node, layout):
    """When vzslave dies between writing the inittab and telling init, the mark it left
    makes the next session reload init before anything else."""
    open(os.path.join(layout.containers, supervision.RELOAD_PENDING), "w").close()
    node.status()
    assert node.calls == ["reload"]
    assert not os.path.exists(os.path.join(layout.containers, supervision.RELOAD_PENDING))
    node.status()
    assert node.calls == ["reload"]


def test_start_and_stop_leave_no_reload_owed(node, layout):
    node.start("app", wait=False)
    node.stop("app", grace=0.1)
    assert not os.path.exists(os.path.join(layout.containers, supervision.RELOAD_PENDING))


def test_stop_on_a_full_disk_freezes_the_container_and_uses_the_reserve(node, layout,
                                                                       monkeypatch):
    node.start("app", wait=False)
    ct.fs.keep_reserve(layout.reserve)
    frozen = []
    monkeypatch.setattr(ct.procs, "freeze", lambda found: frozen.append(found))
    real_save, failures = node._save, [OSError(28, "No space left on device")]

    def save(name, settings):
        if failures:
            raise failures.pop()
        real_save(name, settings)

    monkeypatch.setattr(node, "_save", save)
    assert node.stop("app", grace=0.1).state == "stopped"
    assert frozen and "vzrun" not in node.inittab.read_text()
    assert os.path.getsize(layout.reserve) == ct.fs.RESERVE_BYTES  # made again after


def test_removing_the_bundle_forgets_the_stopped_container_and_its_logs(node, layout):
    node.start("app", wait=False)
    node.stop("app", grace=0.1)
    for name in ("app.log", "app.log.1", "apple.log"):
        open(os.path.join(layout.logs, name), "w").close()
    node.bundles.forget = node.forget
    node.bundles.remove("app")
    with pytest.raises(NoSuchContainerError):
        node.status("app")
    assert os.listdir(layout.logs) == ["apple.log"]


def test_default_capabilities_the_node_lacks_are_left_out_with_a_warning(node, layout,
                                                                        monkeypatch):
    """When a guest's bounding set lacks one of vz's defaults and the config asked for
    no capabilities by name, the app runs without it (warned) rather than not at all."""
    chown = oci.CAPABILITIES["CAP_CHOWN"]
    monkeypatch.setattr(plans, "_bounding_set", lambda: ((1 << 64) - 1) & ~(1 << chown))
    status = node.start("app", wait=False)
    caps = saved_plan(layout)["process"]["capabilities"]
    assert all(chown not in numbers for numbers in caps.values())
    assert any("lacks CAP_CHOWN" in w for w in status.warnings)


# -- an upgrade of a running node -------------------------------------------------------

SYSV_ADMIN = "id:2:initdefault:\n1:2345:respawn:/sbin/getty 38400 tty1\n"
# settings.json as the code before the settings record wrote it for a started container
# (json.dumps(sort_keys=True, indent=1)), and what it wrote after a stop and a start.
OLD_SETTINGS = ('{{\n "id": "v000",\n "log_keep": 2,\n "log_max": 1048576,\n'
                ' "monitor": true,\n "runtime": "builtin",\n "syslog": false,\n'
                ' "tree": "{tree}",\n "wanted": "running",\n "warnings": [\n'
                '  "an old warning"\n ]\n}}')
STOPPED_SETTINGS = ('{{\n "log_keep": 2,\n "log_max": 1048576,\n "monitor": true,\n'
                    ' "runtime": "builtin",\n "syslog": false,\n "wanted": "stopped",\n'
                    ' "warnings": [\n  "an old warning"\n ]\n}}')
STARTED_SETTINGS = ('{{\n "id": "v000",\n "log_keep": 2,\n "log_max": 1048576,\n'
                    ' "monitor": true,\n "runtime": "builtin",\n "syslog": false,\n'
                    ' "tree": "{tree}",\n "wanted": "running",\n "warnings": []\n}}')


def old_state(layout, tree, app_pid):
    """A container's state directory and inittab line as the code before wrote them."""
    state = layout.container_dir("app")
    os.makedirs(state)
    with open(os.path.join(state, "settings.json"), "w") as out:
        out.write(OLD_SETTINGS.format(tree=tree))
    plan = oci.build_plan(oci.load_config(tree), tree, "app")
    plan.update(runtime="builtin", runtime_path=None, runtime_args=[], state_dir=state,
                store=layout.trees, monitor=True,
                log={"path": os.path.join(layout.logs, "app.log"), "max_bytes": 1048576,
                     "keep": 2, "syslog": False},
                backoff={"initial": 1.0, "max": 60.0, "stable": 30.0})
    with open(os.path.join(state, "plan.marshal"), "wb") as out:
        marshal.dump(plan, out)
    with open(os.path.join(state, "run"), "w") as out:
        out.write("pid {}\nticks {}\nstate running\nstarted 1700000000.000\nnext_start \n"
                  "streak 0\nspawns 1\nlast_run \nlast_exit \nlast_error \n"
                  "supervisor builtin\nrecent 1700000000.000\n".format(
                      app_pid, procs.start_time(app_pid)))
    with open(os.path.join(state, "mounts"), "w") as out:
        out.write("0b5c0a3e-0000-4000-8000-000000000000\n")
    return "v000:2345:respawn:{} app\n".format(layout.launcher)


def test_a_node_upgraded_while_a_container_runs_reports_stops_and_starts_it(
        node, layout, tmp_path, monkeypatch):
    """When vz is upgraded on a node with a running container, the new code reads the
    state the old code wrote: status says running, stop ends it and writes settings.json
    as before, and a start puts the same entry back."""
    monkeypatch.setattr(plans, "probe_pivot_root", lambda rootfs: None)
    monkeypatch.setattr(plans, "_bounding_set", lambda: (1 << 64) - 1)
    tree = os.path.realpath(os.path.join(layout.trees, "app.0001"))
    app = subprocess.Popen(["sleep", "60"], start_new_session=True)  # the runner's group
    try:
        inittab = tmp_path / "sysv-inittab"
        inittab.write_text(SYSV_ADMIN + old_state(layout, tree, app.pid))
        upgraded = ct.Containers(layout, node.bundles, lambda: supervision.Supervision(
            "sysvinit", str(inittab), Dialect.SYSV, lambda: node.calls.append("reload")))
        settings = os.path.join(layout.container_dir("app"), "settings.json")

        status = upgraded.status("app")[0]
        assert (status.state, status.pid, status.bundle, status.warnings) == (
            "running", app.pid, tree, ["an old warning"])
        assert status.entry == "v000:2345:respawn:{} app".format(layout.launcher)

        assert upgraded.stop("app", grace=5).state == "stopped"
        assert app.wait(timeout=10) == -signal.SIGTERM
        assert inittab.read_text() == SYSV_ADMIN
        assert open(settings).read() == STOPPED_SETTINGS.format()

        assert upgraded.start("app", wait=False).state == "starting"
        assert inittab.read_text() == SYSV_ADMIN + "v000:2345:respawn:{} app\n".format(
            layout.launcher)
        assert open(settings).read() == STARTED_SETTINGS.format(tree=tree)
        assert node.calls == ["reload", "release", "prepare", "reload"]
    finally:
        app.kill()
        app.wait()
