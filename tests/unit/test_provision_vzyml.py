"""vz.yml edited with its comments and order kept."""

from vzmaster.provision import vzyml

FLEET = """\
# my fleet
ssh: {user: root, key: ~/.ssh/id_ed25519}   # who logs in
nodes:
  fra1: {host: 203.0.113.10, groups: [eu]}  # the first
apps:
  web:
    image: web.tar   # built by CI
"""


def test_a_node_is_added_after_the_others_with_every_comment_kept(tmp_path):
    path = tmp_path / "vz.yml"
    path.write_text(FLEET)
    assert vzyml.add_node(str(path), "ams1", {"host": "198.51.100.7", "groups": ["eu"]})
    assert path.read_text() == FLEET.replace(
        "  # the first\n", "  # the first\n  ams1: {host: 198.51.100.7, groups: [eu]}\n")


def test_adding_the_same_node_again_changes_nothing(tmp_path):
    path = tmp_path / "vz.yml"
    path.write_text(FLEET)
    assert not vzyml.add_node(str(path), "fra1", {"host": "203.0.113.10"})
    assert path.read_text() == FLEET


def test_a_missing_vz_yml_is_created_with_the_node(tmp_path):
    path = tmp_path / "vz.yml"
    assert vzyml.add_node(str(path), "n1", {"host": "10.0.0.1"})
    assert path.read_text() == "nodes:\n  n1: {host: 10.0.0.1}\n"


def test_a_node_is_removed_and_the_rest_kept(tmp_path):
    path = tmp_path / "vz.yml"
    path.write_text(FLEET)
    assert vzyml.remove_node(str(path), "fra1")
    assert "fra1" not in path.read_text() and "# my fleet" in path.read_text()
    assert not vzyml.remove_node(str(path), "fra1")


def test_the_ssh_section_is_read_as_written(tmp_path):
    path = tmp_path / "vz.yml"
    path.write_text(FLEET)
    assert vzyml.read_ssh(str(path)) == {"user": "root", "key": "~/.ssh/id_ed25519"}
    assert vzyml.read_ssh(str(tmp_path / "none.yml")) == {}
