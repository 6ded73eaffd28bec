"""vzmaster: deploy and run apps on vz nodes over SSH.

The public API is ``Client`` and the exceptions below; ``vzslave/errors.py`` draws
the exception tree. The CLI is ``vzmaster`` (vzmaster/cli.py).
"""

from vzmaster.client import Client, LogLines, NodeInfo
from vzmaster.transport import LocalTransport, OpenSSHTransport, Transport
from vzslave import __version__
from vzslave.errors import (
    AuthenticationError,
    BadFrameError,
    BadImageError,
    BadNameError,
    BadConfigError,
    BadRequestError,
    BusyError,
    ChecksumMismatchError,
    ConnectError,
    ConnectionLostError,
    DisabledByAdminError,
    DiskFullError,
    ErrorCode,
    FrameTooLargeError,
    HelloRequiredError,
    HostKeyChangedError,
    HostKeyError,
    InittabError,
    InternalError,
    IOFailureError,
    NoRuntimeError,
    NoSuchBundleError,
    NoSuchContainerError,
    NoSuchImageError,
    OffsetMismatchError,
    PermissionDeniedError,
    PolicyDeniedError,
    ProtocolError,
    TransportError,
    UnsafeImageError,
    UnsupportedFormatError,
    UnsupportedOpError,
    VersionMismatchError,
    VzError,
    WrongStateError,
)
from vzslave.records import BundleInfo, ContainerStatus, ImageInfo, NodeFacts, PartialInfo

__all__ = [
    "AuthenticationError", "BadConfigError", "BadFrameError", "BadImageError",
    "BadNameError", "BadRequestError", "BundleInfo", "BusyError", "ChecksumMismatchError",
    "Client", "ConnectError", "ConnectionLostError", "ContainerStatus",
    "DisabledByAdminError", "DiskFullError", "ErrorCode", "FrameTooLargeError",
    "HelloRequiredError", "HostKeyChangedError", "HostKeyError", "IOFailureError",
    "ImageInfo", "InittabError", "InternalError", "LocalTransport", "LogLines",
    "NoRuntimeError", "NoSuchBundleError", "NoSuchContainerError", "NoSuchImageError",
    "NodeFacts", "NodeInfo", "OffsetMismatchError", "OpenSSHTransport", "PartialInfo",
    "PermissionDeniedError", "PolicyDeniedError", "ProtocolError", "Transport", "TransportError",
    "UnsafeImageError", "UnsupportedFormatError", "UnsupportedOpError",
    "VersionMismatchError", "VzError", "WrongStateError", "__version__",
]
