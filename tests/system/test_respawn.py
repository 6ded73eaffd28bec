"""A forking server respawns clean: Debian's nginx (a master and its workers), built into
an image with ldd-trace, its master killed with SIGKILL, under busybox init and sysvinit,
in a PID namespace or not, with and without the monitor."""

import io
import json
import os
import tarfile

import pytest

from tests.system.conftest import box_pids, connect, wait_for
from vzmaster.imaging import Recipe, build_image

NGINX = "/usr/sbin/nginx"
CONF = """
user nobody nogroup;
worker_processes 2;
pid /run/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path /tmp/body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    server {
        listen 127.0.0.1:8081;
        location / { return 200 "served by $pid\\n"; }
    }
}
"""


@pytest.fixture(scope="module")
def nginx_images(tmp_path_factory):
    """The built image (PID namespace: vzmaster build's default), and the same image
    sharing the node's PIDs, the config the issue's nginx ran with."""
    if not os.path.exists(NGINX):
        if os.environ.get("VZ_REQUIRE_SYSTEM") == "1":
            pytest.fail("nginx is not installed (.ci/install installs it)")
        pytest.skip("nginx is not installed (apt install nginx)")
    work = tmp_path_factory.mktemp("nginx")
    (work / "vz.conf").write_text(CONF)
    built = build_image(Recipe(
        args=[NGINX, "-c", "/etc/nginx/vz.conf", "-g", "daemon off;"], ldd=[NGINX],
        add=[str(work / "vz.conf") + ":/etc/nginx/vz.conf"]), str(work / "nginx.tar.zst"))
    shared = str(work / "nginx-shared-pids.tar")
    _without_pid_namespace(built.image.path, shared)
    return {"pid-ns": built.image.path, "shared-pids": shared}


def _without_pid_namespace(image, out):
    import zstandard
    with open(image, "rb") as source:
        data = zstandard.ZstdDecompressor().stream_reader(source).read()
    with tarfile.open(fileobj=io.BytesIO(data)) as old, tarfile.open(out, "w") as new:
        for member in old.getmembers():
            content = old.extractfile(member) if member.isfile() else None
            if member.name == "config.json":
                config = json.loads(content.read())
                config["linux"]["namespaces"] = [{"type": "mount"}]
                body = json.dumps(config).encode()
                member.size = len(body)
                content = io.BytesIO(body)
            new.addfile(member, content)


def fetch(box):
    done = box.exec(["/bin/busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8081/"],
                    check=False)
    return done.stdout.decode() if done.returncode == 0 else None


def parent_of(box, pid):
    """The parent of ``pid``, or None if it has gone meanwhile (respawns are racing)."""
    done = box.exec(["cat", "/proc/{}/stat".format(pid)], check=False)
    return int(done.stdout.rsplit(b")", 1)[1].split()[1]) if done.returncode == 0 else None


def master_and_workers(box, rootfs):
    pids = box_pids(box, rootfs)
    parents = {pid: parent_of(box, pid) for pid in pids}
    if None in parents.values():
        return None
    masters = [pid for pid, parent in parents.items() if parent not in pids]
    if len(masters) != 1:
        return None
    workers = [pid for pid, parent in parents.items() if parent == masters[0]]
    return (masters[0], workers) if len(workers) == 2 else None


@pytest.mark.parametrize("image, monitor", [("pid-ns", None), ("shared-pids", True),
                                            ("shared-pids", False)],
                         ids=["pid-namespace", "monitor", "no-monitor"])
def test_a_killed_nginx_master_comes_back_and_serves(box, digests, nginx_images, image,
                                                     monitor):
    """When nginx's master dies by SIGKILL, its workers (which hold port 8081) are ended
    before the next master starts, so the new one binds and serves: no endless
    'Address already in use' with the old workers serving the old version."""
    with connect(box, digests) as node:
        node.upload_image(nginx_images[image], "nginx.img")
        node.unpack("nginx.img", "nginx")
        status = node.start("nginx", monitor=monitor)
        assert status.state == "running", status
        rootfs = status.bundle + "/rootfs"
        assert wait_for(lambda: fetch(box), what="nginx serving").startswith("served by ")
        master, workers = wait_for(lambda: master_and_workers(box, rootfs),
                                   what="a master and two workers")
        box.exec(["kill", "-KILL", str(master)])
        wait_for(
            lambda: (lambda found: found if found and found[0] != master else None)(
                master_and_workers(box, rootfs)), timeout=20, what="a new master")
        assert not set(workers) & set(box_pids(box, rootfs))  # the old ones are gone
        assert wait_for(lambda: fetch(box), timeout=10, what="the new nginx serving")
        assert "Address already in use" not in "\n".join(node.logs("nginx", tail=200))
        assert node.status("nginx").state == "running"
        assert node.stop("nginx", grace=2).state == "stopped"
    assert box_pids(box, rootfs) == []
