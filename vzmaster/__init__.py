"""vzmaster: deploy and run apps on vz nodes over SSH.

The public API is ``Client`` and the exceptions below; ``vzslave/errors.py`` draws
the exception tree. The CLI is ``vzmaster`` (vzmaster/cli.py).
"""

from vzmaster.client import Client, NodeInfo
from vzmaster.transport import LocalTransport, OpenSSHTransport, Transport
from vzslave import __version__
from vzslave.errors import (
    AuthenticationError,
    BadFrameError,
    BadImageError,
    BadNameError,
    BadRequestError,
    BusyError,
    ChecksumMismatchError,
    ConnectError,
    ConnectionLostError,
    DiskFullError,
    ErrorCode,
    FrameTooLargeError,
    HelloRequiredError,
    HostKeyChangedError,
    HostKeyError,
    InternalError,
    IOFailureError,
    NoSuchBundleError,
    NoSuchImageError,
    OffsetMismatchError,
    PermissionDeniedError,
    ProtocolError,
    TransportError,
    UnsafeImageError,
    UnsupportedFormatError,
    UnsupportedOpError,
    VersionMismatchError,
    VzError,
)
from vzslave.records import BundleInfo, ImageInfo, NodeFacts, PartialInfo

__all__ = [
    "AuthenticationError", "BadFrameError", "BadImageError", "BadNameError",
    "BadRequestError", "BundleInfo", "BusyError", "ChecksumMismatchError", "Client",
    "ConnectError", "ConnectionLostError", "DiskFullError", "ErrorCode",
    "FrameTooLargeError", "HelloRequiredError", "HostKeyChangedError", "HostKeyError",
    "IOFailureError", "ImageInfo", "InternalError", "LocalTransport", "NoSuchBundleError",
    "NoSuchImageError", "NodeFacts", "NodeInfo", "OffsetMismatchError",
    "OpenSSHTransport", "PartialInfo", "PermissionDeniedError", "ProtocolError",
    "Transport", "TransportError", "UnsafeImageError", "UnsupportedFormatError",
    "UnsupportedOpError", "VersionMismatchError", "VzError", "__version__",
]
