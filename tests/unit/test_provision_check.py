"""node check on a node it cannot reach: one problem, with what to do."""

from vzmaster.provision.check import check_node
from vzmaster.transports import SSHOptions


def test_a_node_that_cannot_be_logged_in_to_is_one_problem_with_a_fix():
    options = SSHOptions("127.0.0.1", port=1, connect_timeout=2, ssh_config=None,
                         known_hosts="/dev/null")
    [problem] = check_node("n1", options)
    assert problem.what.startswith("cannot log in: ")
    assert "node add" in problem.fix
