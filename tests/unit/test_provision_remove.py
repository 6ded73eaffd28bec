"""node remove on a node it cannot reach: the error, and nothing else attempted."""

import pytest

from vzmaster.errors import ConnectError
from vzmaster.provision.remove import remove_node
from vzmaster.transports import SSHOptions


def test_a_node_that_cannot_be_reached_is_a_connect_error_and_no_step_is_said():
    said = []
    options = SSHOptions("127.0.0.1", port=1, connect_timeout=2, ssh_config=None,
                         known_hosts="/dev/null")
    with pytest.raises(ConnectError):
        remove_node(options, say=said.append)
    assert said == []
