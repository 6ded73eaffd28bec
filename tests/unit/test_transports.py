"""SSHOptions, the one record of how to reach a node, and the transport it opens."""

import pytest

import vzmaster.transports as transports
from vzmaster import Client, SSHOptions
from vzmaster.transports.openssh import OpenSSHTransport
from vzmaster.transports.paramiko import ParamikoTransport


def test_an_unknown_via_is_refused_when_the_options_are_made():
    with pytest.raises(ValueError, match="via must be 'paramiko' or 'openssh'"):
        SSHOptions("node1", via="telnet")


@pytest.mark.parametrize("extra", [{"password": "pw"}, {"sock": object()}])
def test_openssh_refuses_what_only_paramiko_can_use(extra):
    with pytest.raises(ValueError, match="need via='paramiko'"):
        SSHOptions("node1", via="openssh", **extra)


def test_the_password_is_not_shown_in_the_record():
    assert "hunter2" not in repr(SSHOptions("node1", password="hunter2"))


@pytest.mark.parametrize("given,files", [(None, ()), ("k", ("k",)), (["a", "b"], ("a", "b"))])
def test_key_files_are_a_tuple_whichever_way_they_were_given(given, files):
    assert SSHOptions("node1", key_filename=given).key_files == files


@pytest.mark.parametrize("host,root", [("local", ""), ("local:/srv/vz", "/srv/vz"),
                                       ("localhost", None), ("node1", None)])
def test_local_hosts_name_their_root(host, root):
    assert SSHOptions(host).local_root == root


class Opened(Exception):
    """Raised by a fake transport factory so that no connection is made."""


def opener(monkeypatch, target, name):
    seen = []

    def fake(*args, **kwargs):
        seen.append((args, kwargs))
        raise Opened()

    monkeypatch.setattr(target, name, fake)
    return seen


def test_a_local_host_opens_a_vzslave_child_with_its_root(monkeypatch):
    seen = opener(monkeypatch, transports, "LocalTransport")
    with pytest.raises(Opened):
        transports.connect(SSHOptions("local:/srv/vz", via="openssh"))
    assert seen == [((), {"root": "/srv/vz"})]


@pytest.mark.parametrize("via,cls", [("openssh", OpenSSHTransport),
                                     ("paramiko", ParamikoTransport)])
def test_via_picks_the_transport_that_gets_the_whole_record(monkeypatch, via, cls):
    seen = opener(monkeypatch, cls, "connect")
    options = SSHOptions("node1", via=via, user="deploy")
    with pytest.raises(Opened):
        transports.connect(options)
    assert seen == [((options,), {})]


def test_client_builds_the_record_from_its_keywords(monkeypatch):
    seen = opener(monkeypatch, ParamikoTransport, "connect")
    with pytest.raises(Opened):
        Client("node1", user="deploy", port=2222, key_filename=["k"], trust_new_host=True,
               connect_timeout=3.0)
    assert seen[0][0] == (SSHOptions("node1", user="deploy", port=2222, key_filename=["k"],
                                     trust_new_host=True, connect_timeout=3.0),)


def test_client_takes_the_record_as_options(monkeypatch):
    seen = opener(monkeypatch, OpenSSHTransport, "connect")
    options = SSHOptions("node1", via="openssh")
    with pytest.raises(Opened):
        Client(options=options)
    assert seen[0][0] == (options,)


def test_client_refuses_keywords_beside_options():
    with pytest.raises(ValueError, match="not both"):
        Client(options=SSHOptions("node1"), user="deploy")


def test_client_needs_a_host_options_or_a_transport():
    with pytest.raises(ValueError, match="give a host, options or a transport"):
        Client()


def test_openssh_gets_the_first_key_file_and_the_port(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # its ControlMaster directory
    options = SSHOptions("node1", via="openssh", port=2222, key_filename=["k1", "k2"],
                         ssh_program=["true"])
    transport = OpenSSHTransport.connect(options)
    try:
        argv = transport.argv
    finally:
        transport.close()
    assert argv[0] == "true" and argv[-4:] == ["-s", "--", "node1", "vzslave"]
    assert argv[argv.index("-i") + 1] == "k1" and "k2" not in argv
    assert argv[argv.index("-p") + 1] == "2222"
