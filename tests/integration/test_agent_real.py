"""The agent zipapp run as a real vzslave child: which msgpack it takes, and hello over pipes.

A node has python3 but maybe no msgpack (``-I -S`` here: the standard library only,
so the bundled pure-Python msgpack must serve), maybe an old Python (3.6, when
pyenv has one), maybe a compiled msgpack of its own (the venv's), which is preferred.
"""

import os
import subprocess
import sys
import zipfile

import pytest

import vzslave
from vzmaster import Client, LocalTransport
from vzmaster.agent import build_agent

PY36 = "/root/.pyenv/versions/3.6.15/bin/python3.6"
needs_py36 = pytest.mark.skipif(not os.path.exists(PY36),
                                reason="no Python 3.6 at {} (.ci/run installs one)".format(PY36))

# Runs the zip's bootstrap without starting a session: which msgpack would vzslave get?
PROBE = """
import runpy, sys
{setup}
bootstrap = runpy.run_path({pyz!r}, run_name="probe")
msgpack = bootstrap["use_msgpack"]()
print(msgpack.__file__)
print(msgpack.Unpacker.__module__)
"""


@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    return build_agent(str(tmp_path_factory.mktemp("agent"))).path


def probe(python, pyz, *flags, setup=""):
    done = subprocess.run([python, *flags, "-c", PROBE.format(pyz=pyz, setup=setup)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    return done.stdout.decode().split()


def hello(command, root, digests):
    with Client(transport=LocalTransport(root=root, command=command), digests=digests) as node:
        return node.hello()


def test_without_msgpack_on_the_node_the_bundled_one_answers_hello(pyz, tmp_path, digests):
    facts = hello([sys.executable, "-I", "-S", pyz], str(tmp_path / "node"), digests)
    assert facts.root == str(tmp_path / "node")


def test_without_msgpack_on_the_node_the_bundled_pure_python_one_is_imported(pyz):
    path, unpacker = probe(sys.executable, pyz, "-I", "-S")
    assert path == os.path.join(pyz, "_vendor", "msgpack", "__init__.py")
    assert unpacker == "msgpack.fallback"


@pytest.mark.parametrize("python", [sys.executable, PY36], ids=["this-python", "python3.6"])
def test_a_compiled_msgpack_of_the_node_is_preferred(pyz, python):
    if not os.path.exists(python):
        pytest.skip("no Python at {} (.ci/run installs one)".format(python))
    own = subprocess.run(
        [python, "-I", "-c", "import msgpack; print(msgpack.__file__, msgpack.version >= (1,),"
         " msgpack.Unpacker.__module__)"], stdout=subprocess.PIPE).stdout.decode().split()
    if own[1:] != ["True", "msgpack._cmsgpack"]:
        message = "{} has no compiled msgpack >= 1.0: {}".format(python, own)
        if os.environ.get("VZ_REQUIRE_SYSTEM") == "1":
            pytest.fail(message + " [VZ_REQUIRE_SYSTEM=1]", pytrace=False)
        pytest.skip(message)
    assert probe(python, pyz, "-I") == [own[0], "msgpack._cmsgpack"]


def test_a_msgpack_older_than_1_0_on_the_node_is_set_aside(pyz, tmp_path):
    """When the node's msgpack is 0.x (Ubuntu 20.04 ships 0.6.2), the half-imported
    package and its submodules are dropped and the bundled one is imported."""
    old = tmp_path / "site" / "msgpack"
    old.mkdir(parents=True)
    (old / "__init__.py").write_text("from msgpack import _version\nversion = (0, 6, 2)\n")
    (old / "_version.py").write_text("")
    setup = "sys.path.insert(0, {!r})".format(str(tmp_path / "site"))
    path, unpacker = probe(sys.executable, pyz, "-I", "-S", setup=setup)
    assert path == os.path.join(pyz, "_vendor", "msgpack", "__init__.py")
    assert unpacker == "msgpack.fallback"


@needs_py36
@pytest.mark.parametrize("flags", [["-I"], ["-I", "-S"]], ids=["its-msgpack", "bundled"])
def test_the_agent_answers_hello_on_python_3_6(pyz, tmp_path, digests, flags):
    facts = hello([PY36, *flags, pyz], str(tmp_path / "node36"), digests)
    assert facts.python.startswith("3.6")


@needs_py36
def test_on_python_3_6_without_site_packages_the_bundled_msgpack_is_imported(pyz):
    path, unpacker = probe(PY36, pyz, "-I", "-S")
    assert path == os.path.join(pyz, "_vendor", "msgpack", "__init__.py")
    assert unpacker == "msgpack.fallback"


def test_vzrun_imports_the_runner_from_the_zip_without_msgpack(pyz, tmp_path):
    """ROOT/bin/vzrun as the zip's vzslave.launcher writes it (#!python -IS, the .pyz
    on sys.path), up to the runner's import; msgpack is made unimportable."""
    render = ("import sys; sys.path.insert(0, {!r})\n"
              "from vzslave.launcher import PACKAGE_PARENT, render_launcher\n"
              "print(PACKAGE_PARENT)\n"
              "sys.stdout.write(render_launcher({!r}, {!r}).decode())\n").format(
                  pyz, str(tmp_path / "bin" / "vzrun"), str(tmp_path))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", render], stdout=subprocess.PIPE,
                         check=True).stdout.decode()
    parent, script = out.split("\n", 1)
    assert parent == pyz
    assert script.startswith("#!{} -IS\n".format(sys.executable))
    head, call = script.rstrip("\n").rsplit("\n", 1)
    assert call.startswith("main(sys.argv[1:]")
    code = ("import sys; sys.modules['msgpack'] = None\n" + head
            + "\nprint(sys.modules['vzslave.runner'].__file__)\n")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], stdout=subprocess.PIPE,
                         check=True).stdout.decode()
    assert out.strip() == os.path.join(pyz, "vzslave", "runner.py")


def test_an_extracted_and_compiled_copy_answers_hello_too(pyz, tmp_path, digests):
    """What an install on the node may do to start faster (vzmaster/agent.py)."""
    copy = str(tmp_path / "vzslave-{}".format(vzslave.__version__))
    with zipfile.ZipFile(pyz) as archive:
        archive.extractall(copy)
    subprocess.run([sys.executable, "-m", "compileall", "-q", copy], check=True)
    facts = hello([sys.executable, "-I", "-S", copy], str(tmp_path / "node"), digests)
    assert facts.root == str(tmp_path / "node")
