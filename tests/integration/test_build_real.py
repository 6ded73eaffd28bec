"""vzmaster build end to end on this machine: real programs, real strace, real chroots."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest

from tests import tarballs as tb
from vzmaster import cli
from vzmaster.imaging import BuildError, Recipe, build_image, inspect_image

PERL_DATE = ["perl", "-MHTTP::Date", "-e", 'print time2str(time())."\\n"']
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HTTP_DATE = re.compile(r"^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\n$")


def unpacked(image_path, dest):
    """The image extracted by the node's own extractor; returns the bundle path."""
    with open(image_path, "rb") as source:
        data = source.read()
    fmt = "tar.zst" if image_path.endswith(".tar.zst") else "tar.xz"
    tb.extract_image(data, dest, fmt=fmt)
    return str(dest)


def run_bundle(bundle, tmp_path):
    """Run the bundle as it is, chrooted by vz's runner (runch run); (status, out, err)."""
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        done = subprocess.run([sys.executable, "-m", "vzslave.runch", "--root",
                               str(tmp_path / "runch"), "run", "--bundle", bundle, "built"],
                              cwd=REPO, stdin=subprocess.DEVNULL, stdout=stdout,
                              stderr=stderr, timeout=60)
    return done.returncode, out.read_text(), err.read_text()


def leftovers(directory):
    return [name for name in os.listdir(directory) if name.startswith(".vz-build-")]


def test_an_ldd_image_runs_its_dynamic_program_in_a_chroot(tmp_path):
    result = build_image(Recipe(args=["/bin/ls", "/etc"], ldd=["/bin/ls"]),
                         str(tmp_path / "ls.tar.zst"))
    status, out, err = run_bundle(unpacked(result.image.path, tmp_path / "out"), tmp_path)
    assert status == 0, err
    assert "passwd" in out.split() and "nsswitch.conf" in out.split()


@pytest.mark.parametrize("suffix", [".tar.zst", ".txz"])
def test_building_twice_from_the_same_inputs_gives_the_same_sha256(tmp_path, suffix):
    recipe = Recipe(args=["/bin/ls"], ldd=["/bin/ls"], env=["LANG=C"], rlimits=["nofile=64"])
    first = build_image(recipe, str(tmp_path / ("one" + suffix)))
    second = build_image(recipe, str(tmp_path / ("two" + suffix)))
    assert first.image.sha256 == second.image.sha256
    with open(first.image.path, "rb") as a, open(second.image.path, "rb") as b:
        assert a.read() == b.read()


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_strace_of_the_seed_example_gives_a_spec_whose_rootfs_prints_a_date(tmp_path):
    if subprocess.run(PERL_DATE, capture_output=True).returncode != 0:
        pytest.skip("perl's HTTP::Date is missing (apt install libhttp-date-perl)")
    spec = tmp_path / "spec"
    traced = build_image(Recipe(args=PERL_DATE, strace=PERL_DATE, spec_out=str(spec)),
                         str(tmp_path / "traced.tar.zst"))
    lines = spec.read_text().splitlines()
    assert lines == traced.traced
    assert any(line.endswith("/HTTP/Date.pm") for line in lines)
    from_spec = build_image(Recipe(args=PERL_DATE, spec=str(spec)),
                            str(tmp_path / "spec.tar.zst"))
    status, out, err = run_bundle(unpacked(from_spec.image.path, tmp_path / "out"), tmp_path)
    assert status == 0, err
    assert HTTP_DATE.match(out), out


def test_a_program_that_is_not_elf_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(BuildError, match="not an ELF program"):
        build_image(Recipe(args=["/etc/passwd"], ldd=["/etc/passwd"]),
                    str(tmp_path / "x.tar.zst"))
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_a_traced_command_that_fails_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(BuildError, match="status 3"):
        build_image(Recipe(args=["/bin/sh"], strace=["sh", "-c", "exit 3"]),
                    str(tmp_path / "x.tar.zst"))
    assert os.listdir(tmp_path) == []


def test_a_bad_config_option_is_refused_before_any_work(tmp_path):
    with pytest.raises(BuildError, match="--rlimit"):
        build_image(Recipe(args=["/bin/ls"], ldd=["/bin/ls"], rlimits=["nofile=lots"]),
                    str(tmp_path / "x.tar.zst"))
    assert os.listdir(tmp_path) == []


def test_an_app_program_missing_from_the_image_is_refused(tmp_path):
    with pytest.raises(BuildError, match="not in the image"):
        build_image(Recipe(args=["/usr/bin/missing"], ldd=["/bin/ls"]),
                    str(tmp_path / "x.tar.zst"))
    assert os.listdir(tmp_path) == []


def test_an_unknown_image_suffix_is_refused(tmp_path):
    with pytest.raises(BuildError):
        build_image(Recipe(args=["/bin/ls"], ldd=["/bin/ls"]), str(tmp_path / "x.zip"))
    assert leftovers(tmp_path) == []


def test_the_cli_builds_and_inspects(tmp_path, capsys):
    image = str(tmp_path / "ls.txz")
    with pytest.raises(SystemExit) as exited:
        cli.main(["build", "--ldd", "/bin/ls", "--env", "A=1", "-o", image, "--",
                  "/bin/ls", "-l"])
    assert exited.value.code == 0
    assert "built " + image in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        cli.main(["inspect", "--json", image])
    summary = json.loads(capsys.readouterr().out)
    assert summary["args"] == ["/bin/ls", "-l"]
    assert summary["sha256"] == inspect_image(image).sha256


def test_the_cli_says_what_is_wrong_and_exits_1(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["build", "--ldd", "/etc/hostname", "-o", str(tmp_path / "x.tar.zst"),
                  "--", "/x"])
    assert exited.value.code == 1
    assert "not an ELF program" in capsys.readouterr().err


def test_the_cli_refuses_a_seccomp_option_it_cannot_use_and_writes_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["build", "--ldd", "/bin/ls", "--seccomp", str(tmp_path / "none.json"),
                  "-o", str(tmp_path / "x.tar.zst"), "--", "/bin/ls"])
    assert exited.value.code == 1
    assert "--seccomp '{}': cannot read it".format(tmp_path / "none.json") in (
        capsys.readouterr().err)
    assert os.listdir(str(tmp_path)) == []


def busybox_root(root):
    """A tiny root directory: static busybox and the applet links the tests use."""
    (root / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", str(root / "bin/busybox"))
    for applet in ("sh", "id", "pwd"):
        (root / "bin" / applet).symlink_to("busybox")
    return root


@pytest.fixture
def busybox_dir(tmp_path):
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox is not installed")
    return busybox_root(tmp_path / "root")


def test_an_image_from_a_root_directory_runs_as_the_user_and_in_the_cwd(tmp_path, busybox_dir):
    result = build_image(Recipe(args=["sh", "-c", "id -u; id -g; pwd"], from_root=str(busybox_dir),
                                user="nobody", cwd="/srv/app"),
                         str(tmp_path / "from-dir.tar.zst"))
    status, out, err = run_bundle(unpacked(result.image.path, tmp_path / "out"), tmp_path)
    assert status == 0, err
    assert out.split() == ["65534", "65534", "/srv/app"]


def test_an_image_from_a_docker_export_tarball_keeps_its_links(tmp_path, busybox_dir):
    tarball = tmp_path / "export.tar"
    subprocess.run(["tar", "-C", str(busybox_dir), "-cf", str(tarball), "."], check=True)
    result = build_image(Recipe(args=["/bin/sh", "-c", "echo from a tarball"],
                                from_root=str(tarball)), str(tmp_path / "from-tar.txz"))
    bundle = unpacked(result.image.path, tmp_path / "out")
    assert os.readlink(os.path.join(bundle, "rootfs/bin/sh")) == "busybox"
    status, out, err = run_bundle(bundle, tmp_path)
    assert (status, out) == (0, "from a tarball\n"), err


@pytest.mark.skipif(shutil.which("strace") is None or not os.path.exists("/usr/sbin/mini_httpd"),
                    reason="needs strace and mini-httpd")
def test_a_server_traced_while_it_serves_keeps_the_files_it_served_and_is_stopped(tmp_path):
    page = tmp_path / "www/index.html"
    page.parent.mkdir()
    page.write_text("traced\n")
    with socket.socket() as probe:  # a free port on loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fetched = []

    def fetch():
        for _ in range(50):
            try:
                with urllib.request.urlopen("http://127.0.0.1:{}/".format(port), timeout=1) as r:
                    fetched.append(r.read())
                    return
            except OSError:
                time.sleep(0.05)

    client = threading.Thread(target=fetch)
    client.start()
    server = ["/usr/sbin/mini_httpd", "-D", "-h", "127.0.0.1", "-p", str(port),
              "-d", str(page.parent), "-l", "/dev/null"]
    result = build_image(Recipe(args=server, strace=server, strace_for=3),
                         str(tmp_path / "web.tar.zst"))
    client.join()
    assert fetched == [b"traced\n"]
    assert {"/usr/sbin/mini_httpd", str(page)} <= set(result.traced)
    # Stopped, though mini_httpd leaves strace's session (setsid) and runs as nobody.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_user_who_cannot_chown_builds_the_same_image_as_root(tmp_path):
    recipe = Recipe(args=["/bin/ls"], ldd=["/bin/ls"])
    as_root = build_image(recipe, str(tmp_path / "root.tar.zst"))
    with tempfile.TemporaryDirectory() as shared:  # pytest's tmp_path is root's only
        os.chmod(shared, 0o777)
        # The effective ids decide who owns what the build writes, as for a real user.
        os.setegid(4242)
        os.seteuid(4242)
        try:
            as_user = build_image(recipe, os.path.join(shared, "user.tar.zst"))
        finally:
            os.seteuid(0)
            os.setegid(0)
        assert os.stat(as_user.image.path).st_uid == 4242
    assert as_user.image.sha256 == as_root.image.sha256
