"""Apps under a real init (busybox init and sysvinit), through real sshd: releases of a
busybox httpd, health-gated switch, rollback, volumes, secrets, pruning, locking."""

import os
import threading

import pytest

from tests import tarballs as tb
from tests.system.conftest import ROOT, connect, wait_for
from vzmaster import (BadRequestError, BusyError, ConnectionLostError, DiskFullError,
                      HealthCheckError, NoSuchReleaseError)

PORT = 8080


def web_image(tmp_path, version, port=PORT, *extra, **config):
    """An image of busybox httpd serving ``version`` at / on ``port``, writing the page
    it served into /data when that is a volume."""
    path = tmp_path / "web-{}-{}.tar".format(version, port)
    script = ("echo {v} > /www/index.html; [ -d /data ] && echo {v} >> /data/seen; "
              "exec httpd -f -p {p} -h /www").format(v=version, p=port)
    path.write_bytes(tb.busybox_image(["sh", "-c", script], tb.directory("rootfs/www"),
                                      *extra, **config))
    return str(path)


def page(box, port=PORT):
    """What the app answers at / (asked from inside the box), or None if refused."""
    result = box.exec(["python3", "-c", "import sys, urllib.request; sys.stdout.write("
                       "urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())",
                       "http://127.0.0.1:{}/".format(port)], check=False)
    return result.stdout.decode().strip() if result.returncode == 0 else None


def push(node, path):
    return node.upload_image(path, os.path.basename(path)).name


HEALTH = {"http": "http://127.0.0.1:{}/".format(PORT), "timeout": 10, "min_uptime": 1}


def test_a_second_release_replaces_the_first_and_counts_no_restart(box, digests, tmp_path):
    with connect(box, digests) as node:
        first = node.deploy("web", push(node, web_image(tmp_path, "v1")), health=HEALTH)
        assert (first.release, first.current) == (1, True)
        assert page(box) == "v1"
        second = node.deploy("web", push(node, web_image(tmp_path, "v2")), health=HEALTH)
        assert page(box) == "v2"
        status = node.status("web")
        releases = node.releases("web")
    assert second.release == 2
    assert [(r.release, r.current) for r in releases] == [(2, True), (1, False)]
    assert status.state == "running" and status.restarts == 0


def test_a_release_that_fails_its_check_leaves_the_previous_one_serving(box, digests,
                                                                        tmp_path):
    with connect(box, digests) as node:
        node.deploy("web", push(node, web_image(tmp_path, "v2")), health=HEALTH)
        bad = push(node, web_image(tmp_path, "v3", port=9090))
        with pytest.raises(HealthCheckError) as failed:
            node.deploy("web", bad, health=dict(HEALTH, timeout=3))
        assert page(box) == "v2"
        assert [r.release for r in node.releases("web")] == [1]
    assert failed.value.details["restored"] == 1
    assert "8080" in failed.value.details["output"]


def test_rollback_runs_the_earlier_release_and_volumes_survive(box, digests, tmp_path):
    volumes = {"data": "/data"}
    with connect(box, digests) as node:
        node.deploy("web", push(node, web_image(tmp_path, "v1")), health=HEALTH,
                    volumes=volumes)
        node.deploy("web", push(node, web_image(tmp_path, "v2")), health=HEALTH,
                    volumes=volumes)
        back = node.rollback("web")
        assert page(box) == "v1"
        [volume] = node.volumes("web")
    assert back.release == 1 and back.current
    seen = box.read_file(volume.path + "/seen").decode().split()
    assert seen == ["v1", "v2", "v1"]


def test_secrets_reach_the_app_and_no_file_under_the_root(box, digests, tmp_path):
    canary = "canary-{}".format(os.urandom(8).hex())
    image = web_image(tmp_path, "s1")
    with connect(box, digests) as node:
        info = node.deploy("web", push(node, image), health=HEALTH,
                           secrets={"API_TOKEN": canary}, env={"MODE": "prod"})
        result = node.run("web", ["sh", "-c", "echo token=$API_TOKEN mode=$MODE"])
        listed = repr(node.releases("web")) + repr(node.apps()) + repr(node.status())
    assert info.secrets == ["API_TOKEN"] and canary not in listed
    assert result.output.strip() == "token={} mode=prod".format(canary)
    # Every file under the root but the secret store (devices and the container's own
    # /proc and /sys mounts are not files of vz's), and the inittab.
    found = box.exec(["grep", "-rl", "-D", "skip", "--exclude-dir=secrets",
                      "--exclude-dir=proc", "--exclude-dir=sys", canary, ROOT, "/etc/inittab"],
                     check=False, timeout=120).stdout.decode().split()
    assert found == []


def test_two_deploys_at_once_one_is_busy(box, digests, tmp_path):
    with connect(box, digests) as node:
        image = push(node, web_image(tmp_path, "v1"))
    errors = []

    def deploy():
        try:
            with connect(box, digests) as node:
                node.deploy("web", image, health=dict(HEALTH, min_uptime=2))
        except BusyError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deploy) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 1
    assert errors[0].details["holder"]["op"] == "app.deploy", errors[0]


def test_bad_arguments_are_refused_and_change_nothing(box, digests, tmp_path):
    with connect(box, digests) as node:
        image = push(node, web_image(tmp_path, "v1"))
        node.deploy("web", image, health=HEALTH)
        for bad in ({"health": {"tcp": 0}}, {"volumes": {"data": "/../etc"}},
                    {"secrets": {"1BAD": "x"}}, {"env": {"A-B": "x"}}):
            with pytest.raises(BadRequestError):
                node.deploy("web", image, **bad)
        with pytest.raises(NoSuchReleaseError):
            node.rollback("web", 7)
        assert [r.release for r in node.releases("web")] == [1]
    assert page(box) == "v1"


def du(box, path):
    """Bytes of the files under ``path`` (a chroot node mounts /proc, /sys and /dev in
    the running rootfs: not vz's files)."""
    return int(box.exec(["du", "-sb", "--exclude=proc", "--exclude=sys", "--exclude=dev",
                         path], check=False).stdout.split()[0])


def test_fifty_deploys_keep_the_disk_bounded(box, digests, tmp_path):
    # BusyBox init sleeps 1 s after every respawn: 50 deploys there take minutes for
    # what the same code shows in 12.
    deploys = 50 if box.init == "sysv" else 12
    files = {v: web_image(tmp_path, v) for v in ("v1", "v2")}
    with connect(box, digests) as node:
        for index in range(deploys):
            image = push(node, files["v1" if index % 2 == 0 else "v2"])  # pruned: again
            node.deploy("web", image, keep=3, health={"min_uptime": 0.2, "timeout": 10})
        releases = node.releases("web")
        image_size = max(info.size for info in node.images())
    assert [r.release for r in releases] == [deploys, deploys - 1, deploys - 2]
    names = box.exec(["ls", "-a", ROOT + "/apps/web/releases"]).stdout.decode().split()
    assert sorted(names) == sorted([".", ".."] + [str(r.release) for r in releases])
    one = du(box, "{}/apps/web/releases/{}".format(ROOT, deploys)) + image_size
    assert du(box, ROOT) <= (3 + 1) * one


def deploy_until_lost(box, digests, image, lost):
    """Deploy ``image`` (with a release command) until the node is killed midway."""
    try:
        with connect(box, digests) as node:
            node.deploy("web", image, health=HEALTH, keep=2, release=["true"])
    except ConnectionLostError as exc:
        lost.append(exc)


KILL_POINTS = ("reserved", "unpacked", "published", "release-command", "switch-marked",
               "switch-planned", "switch-ended", "switched", "checked", "recorded", "pruned")


def test_a_deploy_killed_at_any_point_leaves_one_release_serving_and_a_retry_works(
        box, digests, tmp_path):
    files = {v: web_image(tmp_path, v) for v in ("v1", "v2")}
    with connect(box, digests) as node:
        node.deploy("web", push(node, files["v1"]), health=HEALTH)
    for index, point in enumerate(KILL_POINTS):
        old, new = ("v1", "v2") if index % 2 == 0 else ("v2", "v1")
        with connect(box, digests) as node:
            image = push(node, files[new])  # pruning removes images no kept release uses
        box.write_file(ROOT + "/.pause", "{} 30\n".format(point).encode())
        box.exec(["rm", "-f", ROOT + "/.reached"])
        lost: list = []
        thread = threading.Thread(target=deploy_until_lost, args=(box, digests, image, lost))
        thread.start()
        wait_for(lambda point=point: box.exec(["cat", ROOT + "/.reached"], check=False)
                 .stdout == point.encode(), timeout=30, what="the deploy at " + point)
        box.exec(["pkill", "-KILL", "-f", "python -m vzslave"])
        thread.join()
        box.exec(["rm", "-f", ROOT + "/.pause"])
        assert lost, point
        serving = wait_for(lambda: page(box), timeout=10, what="a page after " + point)
        assert serving in (old, new), point
        with connect(box, digests) as node:
            listed = node.releases("web")
            for release in listed:
                assert box.exec(["test", "-f", "{}/apps/web/releases/{}/release.json".format(
                    ROOT, release.release)], check=False).returncode == 0, (point, release)
            node.deploy("web", push(node, files[new]), health=HEALTH, keep=2)
        assert page(box) == new, point


def test_a_deploy_that_fills_the_disk_keeps_the_old_release_serving(make_box, digests,
                                                                    tmp_path):
    box = make_box("busybox", disk_size="48m")
    big = web_image(tmp_path, "big", PORT, tb.file("rootfs/big", bytes(64 << 20)),
                    fmt="tar.gz")  # 64 MiB of zeros: a small upload, too big to unpack
    with connect(box, digests) as node:
        node.deploy("web", push(node, web_image(tmp_path, "v1")), health=HEALTH)
        with pytest.raises(DiskFullError):
            node.deploy("web", push(node, big), health=HEALTH)
        assert [(r.release, r.current) for r in node.releases("web")] == [(1, True)]
        assert node.status("web").state == "running"
    assert page(box) == "v1"
    assert box.exec(["ls", "-a", ROOT + "/apps/web/releases"]).stdout.split() == [
        b".", b"..", b"1"]
