"""vzmaster.Client driving a real vzslave child process over pipes."""

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import random_bytes, sample_image
from vzmaster import (
    BadImageError,
    BadNameError,
    Client,
    ConnectError,
    ConnectionLostError,
    LocalTransport,
    NoSuchBundleError,
    NoSuchImageError,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_hello_tells_the_node_facts(node, node_root):
    assert node.facts.root == node_root
    assert node.info.version == 1
    assert node.hello().hostname == os.uname().nodename


def test_an_image_goes_up_unpacks_and_comes_down(node, image_file):
    info = node.upload_image(image_file())
    assert [i.name for i in node.images()] == ["app.tar.gz"]
    bundle = node.unpack(info.name, "app")
    assert [b.name for b in node.bundles()] == ["app"]
    assert bundle.sha256 == info.sha256
    node.remove_bundle("app")
    node.remove_image(info.name)
    assert node.images() == [] and node.bundles() == []


def test_progress_reaches_the_total(node, image_file):
    seen = []
    node.upload_image(image_file(random_bytes(3 << 20)), progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (3 << 20, 3 << 20)
    assert len(seen) > 3


def test_the_sha256_is_the_file_sha256(node, image_file):
    data = random_bytes(1 << 20)
    assert node.upload_image(image_file(data)).sha256 == hashlib.sha256(data).hexdigest()


def test_pushing_what_the_node_already_has_sends_nothing(connect, image_file, node_root):
    path = image_file(random_bytes(1 << 20))
    connect().upload_image(path)
    seen = []
    connect().upload_image(path, progress=lambda d, t: seen.append(d))
    assert seen == [1 << 20]


def test_a_changed_file_under_the_same_name_replaces_the_image(node, image_file):
    node.upload_image(image_file(random_bytes(1000, seed=1)))
    info = node.upload_image(image_file(random_bytes(1000, seed=2)))
    assert node.images() == [info]


def test_remote_errors_raise_their_own_classes(node, image_file):
    with pytest.raises(NoSuchImageError, match="nope"):
        node.remove_image("nope")
    with pytest.raises(NoSuchBundleError):
        node.remove_bundle("nope")
    node.upload_image(image_file(b"not a tarball at all"), name="junk.tar")
    with pytest.raises(BadImageError):
        node.unpack("junk.tar", "app")


def test_a_bad_name_is_refused_locally_before_connecting_work(node, image_file):
    with pytest.raises(BadNameError):
        node.upload_image(image_file(), name="../escape")


def test_the_session_survives_remote_errors(node):
    with pytest.raises(NoSuchImageError):
        node.remove_image("nope")
    assert node.images() == []


def test_a_closed_client_says_so(node):
    node.close()
    with pytest.raises(ConnectionLostError, match="closed"):
        node.images()


def test_stray_output_on_the_nodes_stdout_is_a_protocol_error(tmp_path):
    script = "import sys; sys.stdout.write('Welcome to my VPS!\\n'); sys.stdout.flush()"
    transport = LocalTransport(command=[sys.executable, "-c", script])
    from vzmaster import ProtocolError
    with pytest.raises(ProtocolError, match="printing"):
        Client(transport=transport)


def test_the_nodes_stderr_is_drained_and_kept_for_messages(tmp_path):
    script = ("import sys\nfor i in range(20000): sys.stderr.write('noise %d\\n' % i)\n"
              "sys.stderr.flush()")
    transport = LocalTransport(command=[sys.executable, "-c", script])
    with pytest.raises(ConnectError, match="noise 19999"):
        Client(transport=transport)


PY36 = "/root/.pyenv/versions/3.6.15/bin/python3.6"


def python36_with_msgpack():
    if not os.path.exists(PY36):
        return None
    probe = subprocess.run([PY36, "-c", "import msgpack"], stderr=subprocess.DEVNULL)
    return PY36 if probe.returncode == 0 else None


@pytest.mark.skipif(python36_with_msgpack() is None,
                    reason="no Python 3.6 with msgpack here (.ci/run installs one)")
def test_the_node_side_runs_on_python_3_6(tmp_path, image_file, digests):
    env_python = python36_with_msgpack()
    transport = LocalTransport(root=str(tmp_path / "node36"), python=env_python)
    with Client(transport=transport, digests=digests) as node:
        assert node.facts.python.startswith("3.6")
        for fmt in ("tar", "tar.gz", "tar.xz"):
            info = node.upload_image(image_file(sample_image(fmt=fmt), "a." + fmt))
            node.unpack(info.name, "b-" + fmt.replace(".", "-"))
        assert len(node.bundles()) == 3


def test_the_vzslave_command_is_installed_or_runnable():
    command = shutil.which("vzslave") or None
    argv = [command] if command else [sys.executable, "-m", "vzslave"]
    result = subprocess.run(argv + ["--version"], stdout=subprocess.PIPE, cwd=ROOT)
    assert result.stdout.startswith(b"vzslave ")


def test_an_upload_abandoned_midway_is_cancelled_and_the_next_push_resumes(
        connect, image_file):
    """When the progress callback raises (as Ctrl-C would) mid-upload, the client
    cancels the upload rather than close: the session goes on, the node keeps the
    prefix, and the next push resumes from it."""
    path = image_file(random_bytes(3 << 20), "big.img")

    def interrupt(done, _total):
        if done > 1 << 20:
            raise KeyboardInterrupt()

    node = connect()
    with pytest.raises(KeyboardInterrupt):
        node.upload_image(path, progress=interrupt)
    image, partial = node.probe_image("big.img")
    assert image is None and partial.size > 1 << 20
    starts = []
    node.upload_image(path, progress=lambda done, _: starts.append(done))
    assert starts[0] == partial.size


def test_an_upload_of_a_file_that_shrinks_is_cancelled_and_the_session_goes_on(
        connect, image_file):
    path = image_file(random_bytes(3 << 20), "big.img")

    def shrink(done, _total):
        if done > 1 << 20:
            os.truncate(path, done)

    node = connect()
    with pytest.raises(OSError, match="shrank"):
        node.upload_image(path, progress=shrink)
    assert node.probe_image("big.img")[1].size > 0
    assert [i.name for i in node.images()] == []


def test_an_interruption_inside_a_send_still_closes_the_session(connect, image_file):
    """A frame may be half sent: only closing keeps the node from misreading it."""
    path = image_file(random_bytes(3 << 20), "big.img")
    node = connect()
    real_send = node._transport.send
    sent = []

    def send(data):
        sent.append(len(data))
        if len(sent) == 3:
            real_send(data[:100])
            raise KeyboardInterrupt()
        real_send(data)

    node._transport.send = send
    with pytest.raises(KeyboardInterrupt):
        node.upload_image(path)
    with pytest.raises(ConnectionLostError, match="closed"):
        node.images()


@pytest.mark.parametrize("garbage", [
    b"\xc1" * 10,
    b"\xdb\xff\xff\xff\xff" + b"x" * 2000000,  # a str header claiming 4 GiB, then bytes
    b"GET / HTTP/1.1\r\nHost: node\r\n\r\n",
], ids=["invalid-byte", "oversized-str", "http"])
def test_the_real_vzslave_answers_garbage_with_an_error_and_exits(tmp_path, garbage):
    proc = subprocess.Popen([sys.executable, "-m", "vzslave", "--root", str(tmp_path / "n")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    out, _ = proc.communicate(garbage, timeout=30)
    from tests.conftest import decode_frames
    [error] = decode_frames(out)
    assert error.id is None and error.name in ("BAD_FRAME", "FRAME_TOO_LARGE")
    assert proc.returncode == 0
