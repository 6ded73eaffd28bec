"""vzmaster.agent: the vzslave zipapp, built reproducibly and written atomically."""

import hashlib
import io
import os
import subprocess
import sys
import types
import zipfile

import pytest

import vzslave
from vzmaster import agent
from vzmaster.agent import AgentError, agent_bytes, build_agent

PACKAGE = os.path.dirname(os.path.abspath(vzslave.__file__))


def names(data):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.namelist()


def test_the_same_sources_build_the_same_bytes(tmp_path, monkeypatch):
    first = build_agent(str(tmp_path / "a"))
    monkeypatch.setattr(agent, "_built", {})  # built afresh, not taken from the cache
    second = build_agent(str(tmp_path / "b"))
    assert first.sha256 == second.sha256
    assert (tmp_path / "a" / first.name).read_bytes() == (tmp_path / "b" / second.name).read_bytes()


def test_the_build_names_its_file_for_the_vzslave_version(tmp_path):
    built = build_agent(str(tmp_path))
    data = (tmp_path / built.name).read_bytes()
    assert built.name == "vzslave-{}.pyz".format(vzslave.__version__)
    assert built.version == vzslave.__version__
    assert built.path == str(tmp_path / built.name)
    assert (built.size, built.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert oct(os.stat(built.path).st_mode & 0o777) == oct(0o644)


def test_it_holds_every_vzslave_module_as_installed():
    with zipfile.ZipFile(io.BytesIO(agent_bytes())) as archive:
        for name in os.listdir(PACKAGE):
            if name.endswith(".py"):
                with open(os.path.join(PACKAGE, name), "rb") as source:
                    assert archive.read("vzslave/" + name) == source.read(), name


def test_it_holds_msgpacks_pure_python_modules_under_vendor():
    import msgpack
    held = names(agent_bytes())
    directory = os.path.dirname(msgpack.__file__)
    for name in os.listdir(directory):
        if name.endswith(".py"):
            assert "_vendor/msgpack/" + name in held
    assert "_vendor/msgpack/fallback.py" in held


def test_it_holds_no_compiled_code_and_no_cache_directory():
    held = names(agent_bytes())
    assert [n for n in held if n.endswith((".so", ".pyc", ".pyd")) or "__pycache__" in n] == []


def test_its_entries_are_sorted_with_a_fixed_date_and_mode():
    with zipfile.ZipFile(io.BytesIO(agent_bytes())) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert infos[0].filename == "__main__.py"


@pytest.mark.parametrize("compression", ["stored", "deflated"])
def test_it_is_smaller_than_a_megabyte(compression):
    assert len(agent_bytes(compression)) < 1_000_000


def test_deflated_members_are_deflated_and_stored_ones_stored():
    for compression, kind in (("stored", zipfile.ZIP_STORED),
                              ("deflated", zipfile.ZIP_DEFLATED)):
        with zipfile.ZipFile(io.BytesIO(agent_bytes(compression))) as archive:
            assert {i.compress_type for i in archive.infolist()} == {kind}


def test_an_unknown_compression_is_refused():
    with pytest.raises(AgentError, match="stored or deflated"):
        agent_bytes("bzip2")


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    target = tmp_path / agent.agent_name()
    target.write_bytes(b"the previous agent")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(agent.os, "fsync", broken_fsync)
    with pytest.raises(AgentError, match="No space left"):
        build_agent(str(tmp_path))
    assert target.read_bytes() == b"the previous agent"
    assert os.listdir(str(tmp_path)) == [target.name]


def test_a_failed_write_of_a_new_file_leaves_nothing(tmp_path, monkeypatch):
    def broken_replace(source, destination):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(agent.os, "replace", broken_replace)
    with pytest.raises(AgentError, match="cannot write"):
        build_agent(str(tmp_path / "out"))
    assert os.listdir(str(tmp_path / "out")) == []


def test_a_msgpack_older_than_1_0_is_refused(monkeypatch):
    old = types.ModuleType("msgpack")
    old.version = (0, 6, 2)
    old.__file__ = "/nowhere/msgpack/__init__.py"
    monkeypatch.setitem(sys.modules, "msgpack", old)
    with pytest.raises(AgentError, match="0.6.2 is installed; the agent needs 1.0"):
        agent.msgpack_files()


def test_code_that_needs_a_newer_python_than_the_nodes_is_refused(tmp_path):
    source = tmp_path / "fallback.py"
    source.write_text("import math\nif (n := math.prod([2, 3])):\n    pass\n")
    with pytest.raises(AgentError, match="needs a newer Python than 3.6") as caught:
        agent.check_node_python([str(source)])
    assert "named expressions" in caught.value.message


def test_a_build_without_vermin_is_refused_with_what_to_install(monkeypatch):
    real = agent.importlib.util.find_spec
    monkeypatch.setattr(agent.importlib.util, "find_spec",
                        lambda name: None if name == "vermin" else real(name))
    with pytest.raises(AgentError, match="pip install vermin"):
        agent.check_node_python(["x.py"])


def test_the_bootstrap_runs_on_python_3_6_by_vermin(tmp_path):
    main = tmp_path / "__main__.py"
    main.write_text(agent.MAIN)
    agent.check_node_python([str(main)])  # raises if not


def test_the_command_builds_and_prints_path_size_and_sha256(tmp_path, capsys):
    agent.main(["build", "-o", str(tmp_path), "--compression", "deflated"])
    path, size, sha256 = capsys.readouterr().out.splitlines()
    data = (tmp_path / agent.agent_name()).read_bytes()
    assert path == str(tmp_path / agent.agent_name())
    assert size.split() == ["size", str(len(data)), "bytes", "(deflated)"]
    assert sha256.split() == ["sha256", hashlib.sha256(data).hexdigest()]


def test_the_built_agent_answers_version(tmp_path, capsys):
    agent.main(["build", "-o", str(tmp_path)])
    path = capsys.readouterr().out.splitlines()[0]
    done = subprocess.run([sys.executable, "-I", "-S", path, "--version"],
                          stdout=subprocess.PIPE, check=True)
    assert done.stdout.decode().strip() == "vzslave " + vzslave.__version__
