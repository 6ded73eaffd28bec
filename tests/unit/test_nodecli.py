"""node add's command line: where the password comes from, which vz.yml and key."""

from vzmaster import nodecli
from vzmaster.cli import parse_args


def test_the_password_comes_from_a_file_never_argv(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\nignored\n")
    args = parse_args(["node", "add", "n1", "10.0.0.1", "--password-file", str(secret)])
    assert nodecli._password(args) == "s3cret"  # noqa: SLF001


def test_a_password_file_that_cannot_be_read_is_one_line_and_exit_1(tmp_path, capsys):
    (tmp_path / "id.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOo"
                                     "qKLsabgH5C9okWi0dh2l9GKJl me\n")
    args = parse_args(["node", "add", "n1", "192.0.2.1", "--password-file",
                       str(tmp_path / "missing"), "-c", str(tmp_path / "vz.yml"),
                       "--key", str(tmp_path / "id.pub")])
    assert nodecli.cmd_add(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "node add n1: password file " in err


def test_the_password_comes_from_vz_password_otherwise(monkeypatch):
    monkeypatch.setenv("VZ_PASSWORD", "from-env")
    assert nodecli._password(parse_args(["node", "add", "n1", "h"])) == "from-env"  # noqa: SLF001


def test_vz_yml_is_found_and_its_ssh_paths_resolved_beside_it(tmp_path, monkeypatch):
    (tmp_path / "vz.yml").write_text("ssh: {key: keys/id, known_hosts: kh}\nnodes: {}\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    monkeypatch.delenv("VZ_CONFIG", raising=False)
    path, ssh = nodecli._vz_yml(None)  # noqa: SLF001
    assert path == str(tmp_path / "vz.yml")
    assert ssh == {"key": str(tmp_path / "keys/id"), "known_hosts": str(tmp_path / "kh")}


def test_without_a_vz_yml_one_is_made_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VZ_CONFIG", raising=False)
    assert nodecli._vz_yml(None) == (str(tmp_path / "vz.yml"), {})  # noqa: SLF001
