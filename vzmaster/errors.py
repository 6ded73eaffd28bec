"""The errors of vz, drawn once; the master's transport errors live here.

Exception tree::

    Exception
    └── Error                       every error vz raises on purpose (vzslave.errors)
        ├── VzError                 the node refused or failed a request; crosses the wire
        │   ├── BadFrameError           10  one subclass per ErrorCode (vzslave/errors.py)
        │   ├── ...
        │   └── InternalError           99
        ├── TransportError          talking to the node failed, on this side of the wire
        │   ├── ConnectError            could not reach, verify or log in to the node
        │   │   ├── HostKeyError            unknown host key (not trusted yet)
        │   │   │   └── HostKeyChangedError the node shows a different key than before
        │   │   └── AuthenticationError     no offered credential was accepted
        │   ├── ConnectionLostError     the link dropped while a request was under way
        │   └── ProtocolError           the peer sent something that is not the vz protocol
        ├── BuildError              making an image on this machine failed (vzmaster.imaging)
        ├── AgentError              the vzslave agent file could not be built (vzmaster.agent)
        ├── ConfigError             vz.yml is missing or wrong (vzmaster.fleet.config)
        ├── InventoryError          an Ansible inventory is unreadable (vzmaster.fleet.inventory)
        └── BoxError                a local test node failed (vzmaster.testing.box)

Every one has ``message``; a ``VzError`` also has ``code`` and ``details``. The master's
families hang straight from ``Error``, with no master-only base between: nothing catches
"any failure of this side but not the node's", while ``vzmaster`` (the CLI) catches
``Error`` once and picks the exit status by family. The node raises only ``VzError``s
(it never imports this module); ``BuildError``, ``AgentError``, ``ConfigError``,
``InventoryError`` and ``BoxError`` live with the code that raises them. ``ConfigError``
also keeps ``problems``, one line each (``vz.yml:14: apps.web.replica: unknown key ...``);
loading vz.yml turns an ``InventoryError`` into one of them.
"""

from __future__ import annotations

from vzslave import errors as node_errors
from vzslave.errors import Error


class TransportError(Error):
    """Talking to the node failed on this side: connecting, or the link itself."""


class ConnectError(TransportError):
    """The node could not be reached, verified or logged in to."""


class HostKeyError(ConnectError):
    """The node's host key is not in known_hosts, so it cannot be trusted yet."""


class HostKeyChangedError(HostKeyError):
    """The node's host key differs from the one in known_hosts."""


class AuthenticationError(ConnectError):
    """The node refused every credential offered."""


class ConnectionLostError(TransportError):
    """The link to the node dropped while a request was under way."""


class ProtocolError(TransportError):
    """The peer sent bytes that are not the vz protocol."""


def describe(exc: Error) -> str:
    """What went wrong, for the user: a node's refusal carries its code's name, a failed
    health check the last lines of the app's log (as many as the node sent)."""
    if not isinstance(exc, node_errors.VzError):
        return exc.message or type(exc).__name__
    text = "{}: {}".format(node_errors.code_name(exc.code_number), exc.message)
    log = exc.details.get("log") if isinstance(exc, node_errors.HealthCheckError) else None
    if isinstance(log, str) and log.strip():
        text += "\nlast lines of its log:\n" + "\n".join(
            "  " + line for line in log.strip().splitlines())
    return text
