"""The launcher node add writes, read back by node upgrade."""

from vzmaster.provision.add import launcher_text
from vzmaster.provision.upgrade import launcher_target


def test_the_launcher_names_its_python_and_zipapp():
    text = launcher_text("/usr/bin/python3", "/usr/local/lib/vz/vzslave-0.2.0-abc")
    assert launcher_target(text) == ("/usr/bin/python3", "/usr/local/lib/vz/vzslave-0.2.0-abc")


def test_a_launcher_vz_did_not_write_is_not_read_as_one():
    assert launcher_target(b"#!/bin/sh\nexec /opt/venv/bin/vzslave \"$@\"\n") is None
    assert launcher_target(None) is None
