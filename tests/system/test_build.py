"""Built images on a real node: an ldd-trace image of a dynamically linked server runs
under vz's runner and, unchanged, under runc."""

import os
import sys

import pytest

from tests.system.conftest import connect, wait_for
from vzmaster.imaging import Recipe, build_image

SERVER = "/usr/sbin/mini_httpd"


@pytest.fixture(scope="module")
def server_image(tmp_path_factory):
    """mini_httpd, its libraries and a page, built with ldd-trace."""
    if not os.path.exists(SERVER):
        pytest.skip("mini-httpd is not installed (apt install mini-httpd)")
    work = tmp_path_factory.mktemp("build")
    (work / "www").mkdir()
    (work / "www/index.html").write_text("served from a built image\n")
    result = build_image(Recipe(
        args=[SERVER, "-D", "-h", "0.0.0.0", "-p", "8080", "-d", "/www", "-u", "nobody",
              "-l", "/dev/stderr"],
        ldd=[SERVER], add=[str(work / "www") + ":/www"]), str(work / "web.tar.zst"))
    packages = sum(result.packages.values())
    # The figure the issue asks for: the image against the packages its files came from.
    print("\nmini_httpd image: {} files, {} bytes unpacked, {} packed; packages {} = {} "
          "bytes installed ({:.1%})".format(
              result.image.files, result.image.content_bytes, result.image.size,
              sorted(result.packages), packages, result.image.content_bytes / packages),
          file=sys.stderr)
    return result


def fetch(box):
    """The page, fetched inside the node (the container uses the node's network)."""
    done = box.exec(["/bin/busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
                    check=False)
    return done.stdout.decode() if done.returncode == 0 else None


@pytest.mark.parametrize("runtime", ["builtin", "runc"])
def test_an_ldd_trace_image_of_a_dynamic_server_serves_pages(box, digests, server_image,
                                                             runtime):
    with connect(box, digests) as node:
        node.upload_image(server_image.image.path, "web.tar.zst")
        node.unpack("web.tar.zst", "web")
        node.start("web", runtime=runtime)
        assert wait_for(lambda: fetch(box), what="a page") == "served from a built image\n"
        pids = wait_for(lambda: box.exec(["pidof", "mini_httpd"], check=False).stdout.split(),
                        what="mini_httpd")
        status = box.exec(["cat", "/proc/{}/status".format(pids[0].decode())]).stdout
        assert b"Uid:\t65534" in status  # it dropped to nobody, found in the image's passwd
        assert node.stop("web", grace=2).state == "stopped"
    assert fetch(box) is None


def test_the_image_holds_only_the_server_its_libraries_and_the_small_files(server_image):
    copied = {os.path.basename(path) for path in server_image.copied}
    assert {"mini_httpd", "libc.so.6", "libssl.so.3", "libcrypto.so.3",
            "ld-linux-x86-64.so.2"} <= copied
    assert server_image.image.content_bytes < sum(server_image.packages.values())
