"""The launcher ROOT/bin/vzrun: its text, and its install that rewrites only a different one."""

import os
import subprocess
import sys

import pytest

from vzslave import launcher
from vzslave.errors import InittabError


def test_the_launcher_runs_the_runner_of_this_vzslave_on_the_state_root(layout):
    text = launcher.render_launcher(layout.launcher, layout.root).decode()
    lines = text.splitlines()
    assert lines[0] == "#!{} -IS".format(sys.executable)
    assert "sys.path.insert(0, {!r})".format(launcher.PACKAGE_PARENT) in lines
    assert lines[-1] == "main(sys.argv[1:], {!r})".format(layout.root)
    assert os.path.isdir(os.path.join(launcher.PACKAGE_PARENT, "vzslave"))


def test_the_launcher_imports_this_vzslaves_runner(layout):
    """The text, run by its interpreter, finds vzslave.runner.main (without calling it)."""
    text = launcher.render_launcher(layout.launcher, layout.root).decode()
    code = text.replace("main(sys.argv[1:], ", "print(main.__module__, ")
    done = subprocess.run([sys.executable, "-IS", "-c", code], check=True,
                          stdout=subprocess.PIPE, universal_newlines=True, cwd="/")
    assert done.stdout.split() == ["vzslave.runner", layout.root]


def test_install_writes_an_executable_launcher(layout):
    launcher.install_launcher(layout)
    assert os.access(layout.launcher, os.X_OK)
    with open(layout.launcher, "rb") as source:
        assert source.read() == launcher.render_launcher(layout.launcher, layout.root)


def test_install_leaves_an_identical_launcher_alone_and_rewrites_another(layout):
    launcher.install_launcher(layout)
    inode = os.stat(layout.launcher).st_ino
    launcher.install_launcher(layout)
    assert os.stat(layout.launcher).st_ino == inode
    with open(layout.launcher, "w") as out:
        out.write("#!/usr/bin/python2\n")
    launcher.install_launcher(layout)
    with open(layout.launcher, "rb") as source:
        assert source.read() == launcher.render_launcher(layout.launcher, layout.root)


def test_an_interpreter_path_too_long_for_a_shebang_is_refused(layout):
    """When the #! line passes 127 bytes (sysvinit-era kernels cut it), no launcher."""
    with pytest.raises(InittabError, match="too long for a #! line"):
        launcher.install_launcher(layout, "/opt/" + "x" * 120 + "/python3")
    assert not os.path.exists(layout.launcher)
