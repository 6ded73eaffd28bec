"""vzmaster: deploy and run apps on vz nodes over SSH.

The public API is ``Client`` and the exceptions below; ``vzmaster/errors.py`` draws
the exception tree. The CLI is ``vzmaster`` (vzmaster/cli.py).
"""

from vzmaster.client import Client, LogLines, NodeInfo
from vzmaster.errors import (
    AuthenticationError,
    ConnectError,
    ConnectionLostError,
    HostKeyChangedError,
    HostKeyError,
    ProtocolError,
    TransportError,
)
from vzmaster.transports import LocalTransport, OpenSSHTransport, SSHOptions, Transport
from vzslave import __version__
from vzslave.errors import (
    BadConfigError,
    BadFrameError,
    BadImageError,
    BadNameError,
    BadRequestError,
    BusyError,
    ChecksumMismatchError,
    DisabledByAdminError,
    DiskFullError,
    Error,
    ErrorCode,
    FirewallError,
    FrameTooLargeError,
    HealthCheckError,
    HelloRequiredError,
    InittabError,
    InternalError,
    IOFailureError,
    NoRuntimeError,
    NoSuchAppError,
    NoSuchBundleError,
    NoSuchContainerError,
    NoSuchImageError,
    NoSuchReleaseError,
    OffsetMismatchError,
    PermissionDeniedError,
    PolicyDeniedError,
    ReleaseCommandError,
    UnsafeImageError,
    UnsupportedFormatError,
    UnsupportedOpError,
    VersionMismatchError,
    VzError,
    WrongStateError,
)
from vzslave.records import (
    AppDiff,
    AppInfo,
    BundleInfo,
    ContainerStatus,
    FirewallStatus,
    HealthResult,
    ImageInfo,
    NodeFacts,
    PartialInfo,
    ReleaseInfo,
    RunResult,
    VolumeInfo,
)

__all__ = [
    "AppDiff", "AppInfo", "AuthenticationError", "BadConfigError", "BadFrameError",
    "BadImageError", "BadNameError", "BadRequestError", "BundleInfo", "BusyError",
    "ChecksumMismatchError", "Client", "ConnectError", "ConnectionLostError",
    "ContainerStatus", "DisabledByAdminError", "DiskFullError", "Error", "ErrorCode",
    "FirewallError", "FirewallStatus", "FrameTooLargeError", "HealthCheckError",
    "HealthResult", "HelloRequiredError", "HostKeyChangedError", "HostKeyError",
    "IOFailureError", "ImageInfo",
    "InittabError", "InternalError", "LocalTransport", "LogLines", "NoRuntimeError",
    "NoSuchAppError", "NoSuchBundleError", "NoSuchContainerError", "NoSuchImageError",
    "NoSuchReleaseError", "NodeFacts", "NodeInfo", "OffsetMismatchError",
    "OpenSSHTransport", "PartialInfo", "PermissionDeniedError", "PolicyDeniedError",
    "ProtocolError", "ReleaseCommandError", "ReleaseInfo", "RunResult", "SSHOptions",
    "Transport", "TransportError", "UnsafeImageError", "UnsupportedFormatError",
    "UnsupportedOpError", "VersionMismatchError", "VolumeInfo", "VzError",
    "WrongStateError", "__version__",
]

# The exceptions show the name users import them by (vzmaster.NoSuchImageError), as
# httpx does; pickle finds them here by that name. Only this process sees the change:
# a node never imports vzmaster, so its classes keep vzslave.errors.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type) and issubclass(_value, Error):
        _value.__module__ = __name__
del _name, _value
