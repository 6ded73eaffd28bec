"""node add's command line: where the password comes from, which vz.yml and key."""

from vzmaster import nodecli
from vzmaster.cli import parse_args


def test_the_password_comes_from_a_file_never_argv(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\nignored\n")
    args = parse_args(["node", "add", "n1", "10.0.0.1", "--password-file", str(secret)])
    assert nodecli._password(args) == "s3cret"  # noqa: SLF001


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
