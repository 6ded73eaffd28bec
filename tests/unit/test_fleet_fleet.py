"""Fleet without nodes that answer: what it refuses, and how it reports nodes it cannot
reach. Real nodes: tests/system/test_fleet.py."""

import pytest

from vzmaster.errors import ConnectError
from vzmaster.fleet import Fleet, FleetError, load_config

VZ_YML = """\
nodes:
  a: {host: 192.0.2.1}
  b: {host: 192.0.2.2}
apps:
  web: {image: web.tar, replicas: 1}
"""


@pytest.fixture
def config(tmp_path):
    (tmp_path / "vz.yml").write_text(VZ_YML)
    (tmp_path / "web.tar").write_bytes(b"not really an image")
    return load_config(str(tmp_path / "vz.yml"))


def unreachable(name, options):
    raise ConnectError("cannot reach {} port 22: timed out".format(options.host))


def test_nodes_that_do_not_answer_are_reported_not_raised(config):
    with Fleet(config, connector=unreachable) as fleet:
        plan = fleet.plan()
    assert plan.unreachable == {"a": "cannot reach 192.0.2.1 port 22: timed out",
                                "b": "cannot reach 192.0.2.2 port 22: timed out"}
    assert plan.steps == []
    assert plan.warnings == ["web: 1 of 1 replicas found no node (nodes that answered and "
                             "its nodes: allows: none)"]


def test_the_connect_timeout_given_reaches_every_node(config):
    seen = []

    def record(name, options):
        seen.append(options.connect_timeout)
        raise ConnectError("no")

    with Fleet(config, connector=record, connect_timeout=2.5) as fleet:
        fleet.plan()
    assert seen == [2.5, 2.5]


def test_an_app_not_in_vz_yml_is_refused_naming_those_it_has(config):
    with Fleet(config, connector=unreachable) as fleet:
        with pytest.raises(FleetError, match="app 'db' is not in .*it has: web"):
            fleet.deploy(["db"])


def test_a_rollback_with_no_node_running_the_app_says_so(config):
    with Fleet(config, connector=unreachable) as fleet:
        with pytest.raises(FleetError, match="no node that answered runs app web"):
            fleet.rollback("web")


def test_parallel_must_be_positive(config):
    with pytest.raises(ValueError):
        Fleet(config, parallel=0)


def test_an_image_file_that_cannot_be_read_is_refused_naming_the_app(config, tmp_path):
    (tmp_path / "web.tar").unlink()
    with Fleet(config, connector=unreachable) as fleet:
        with pytest.raises(FleetError, match="app web: cannot read its image .*web.tar"):
            fleet.deploy()


def test_logs_with_no_node_running_the_app_say_so_and_which_did_not_answer(config):
    with Fleet(config, connector=unreachable) as fleet:
        with pytest.raises(FleetError, match="no node that answered runs app web; a did "
                                             "not answer: cannot reach 192.0.2.1"):
            list(fleet.logs("web"))
