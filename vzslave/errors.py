"""The node's errors: ``Error``, the root of every error vz raises, and ``VzError``.

``VzError`` is a request the node refused or failed: one subclass per ``ErrorCode``, each
naming its code, so ``CODE_TO_ERROR`` is found from the subclasses, never listed by
hand. Domain code on the node raises a ``VzError`` subclass; ``server.py`` is the one
place that turns exceptions into wire errors and the client turns them back
(``error_from_code``) into the same class. Codes are append-only and grouped by
decade: 1x protocol, 2x images, 3x bundles and containers, 4x logs, 5x the firewall,
8x node resources, 9x internal. A code this side does not know decodes to plain ``VzError``.

The master hangs its own families under ``Error`` too (the transport errors, the
build and test-node errors): vzmaster/errors.py draws the whole tree, once.

Standard library only: this module runs on the node (Python 3.6+).
"""

import enum
import errno
from typing import Any, Dict, Optional, Type


class ErrorCode(enum.IntEnum):
    """Wire error codes; documented in docs/protocol.md. Append only."""

    BAD_FRAME = 10
    FRAME_TOO_LARGE = 11
    VERSION_MISMATCH = 12
    HELLO_REQUIRED = 13
    UNSUPPORTED_OP = 14
    BAD_REQUEST = 15
    BAD_NAME = 16

    NO_SUCH_IMAGE = 20
    CHECKSUM_MISMATCH = 21
    OFFSET_MISMATCH = 22
    BAD_IMAGE = 23
    UNSAFE_IMAGE = 24
    UNSUPPORTED_FORMAT = 25

    NO_SUCH_BUNDLE = 30
    NO_SUCH_CONTAINER = 31
    BAD_CONFIG = 32
    DISABLED_BY_ADMIN = 33
    INITTAB_ERROR = 34
    NO_RUNTIME = 35
    WRONG_STATE = 36
    POLICY_DENIED = 37

    NO_SUCH_APP = 40
    NO_SUCH_RELEASE = 41
    HEALTH_FAILED = 42
    RELEASE_FAILED = 43

    FIREWALL_FAILED = 50

    DISK_FULL = 80
    PERMISSION_DENIED = 81
    BUSY = 82
    IO_ERROR = 83

    INTERNAL = 99


class Error(Exception):
    """The root of every error vz raises on purpose; ``message`` says what happened."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class VzError(Error):
    """A request failed on the node. ``code`` says how; ``details`` carries data."""

    code: Optional[ErrorCode] = None

    def __init__(self, message: str, details: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.details = dict(details or {})

    @property
    def code_number(self) -> int:
        """The numeric code, also for codes this side does not know."""
        if self.code is not None:
            return int(self.code)
        return int(self.details.get("code", ErrorCode.INTERNAL))


class BadFrameError(VzError):
    """A frame was not valid msgpack or not a valid vz frame."""

    code = ErrorCode.BAD_FRAME


class FrameTooLargeError(VzError):
    """A frame, or a string or binary field in it, exceeded the size limits."""

    code = ErrorCode.FRAME_TOO_LARGE


class VersionMismatchError(VzError):
    """Client and node share no protocol version."""

    code = ErrorCode.VERSION_MISMATCH


class HelloRequiredError(VzError):
    """A request came before the ``hello`` exchange."""

    code = ErrorCode.HELLO_REQUIRED


class UnsupportedOpError(VzError):
    """The node does not know the requested op."""

    code = ErrorCode.UNSUPPORTED_OP


class BadRequestError(VzError):
    """The op is known but its arguments are missing, unknown or of the wrong type."""

    code = ErrorCode.BAD_REQUEST


class BadNameError(VzError):
    """An image or bundle name is not acceptable."""

    code = ErrorCode.BAD_NAME


class NoSuchImageError(VzError):
    """No image of that name is on the node."""

    code = ErrorCode.NO_SUCH_IMAGE


class ChecksumMismatchError(VzError):
    """The uploaded bytes do not have the sha256 the client announced."""

    code = ErrorCode.CHECKSUM_MISMATCH


class OffsetMismatchError(VzError):
    """A resumed upload does not start where the node's partial copy ends."""

    code = ErrorCode.OFFSET_MISMATCH


class BadImageError(VzError):
    """The image is not a readable tarball of an OCI bundle."""

    code = ErrorCode.BAD_IMAGE


class UnsafeImageError(VzError):
    """A tarball member was refused by the unpack policy (see vzslave/unpack.py)."""

    code = ErrorCode.UNSAFE_IMAGE


class UnsupportedFormatError(VzError):
    """The image's compression cannot be read on this node."""

    code = ErrorCode.UNSUPPORTED_FORMAT


class NoSuchBundleError(VzError):
    """No bundle of that name is on the node."""

    code = ErrorCode.NO_SUCH_BUNDLE


class NoSuchContainerError(VzError):
    """No container of that name was ever started on the node (or it was removed)."""

    code = ErrorCode.NO_SUCH_CONTAINER


class BadConfigError(VzError):
    """A bundle's config.json is invalid or asks for what the runner cannot honour.

    ``details["field"]`` names the offending field, e.g. ``linux.uidMappings``.
    """

    code = ErrorCode.BAD_CONFIG


class DisabledByAdminError(VzError):
    """The sysadmin commented out or deleted the container's inittab entry.

    vz does not put it back unless the start request asks to override.
    """

    code = ErrorCode.DISABLED_BY_ADMIN


class InittabError(VzError):
    """The node's inittab cannot be used: unsupported init, unparsable or unwritable
    file, or an entry that would break the init's limits."""

    code = ErrorCode.INITTAB_ERROR


class NoRuntimeError(VzError):
    """The container is set to run under runc or crun, which the node does not have."""

    code = ErrorCode.NO_RUNTIME


class WrongStateError(VzError):
    """The container is not in a state that allows the request (OCI lifecycle)."""

    code = ErrorCode.WRONG_STATE


class PolicyDeniedError(VzError):
    """The node's policy (ROOT/policy.json) forbids what the config or request asks.

    ``details["field"]`` names the config field, ``details["policy"]`` the policy key.
    """

    code = ErrorCode.POLICY_DENIED


class NoSuchAppError(VzError):
    """No app of that name was ever deployed on the node (or it was removed)."""

    code = ErrorCode.NO_SUCH_APP


class NoSuchReleaseError(VzError):
    """The app has no release of that number (never made, pruned, or none to go back to)."""

    code = ErrorCode.NO_SUCH_RELEASE


class HealthCheckError(VzError):
    """A new release did not come up healthy; the previous one runs again.

    ``details``: ``release``, ``output`` (what the check saw), ``log`` (the release's last
    log lines), ``restored`` (the release running now, or None).
    """

    code = ErrorCode.HEALTH_FAILED


class ReleaseCommandError(VzError):
    """The release command of a new release failed; nothing was switched.

    ``details``: ``release``, ``exit`` (its exit status or signal), ``output``.
    """

    code = ErrorCode.RELEASE_FAILED


class FirewallError(VzError):
    """The node's firewall tool failed, is missing, or vz's chain is not vz's to change.

    ``details``: ``tool``, ``exit`` and ``stderr`` when a tool failed (a failed
    transaction changed nothing, as the message says); ``missing`` (the tools to
    install) when there is none.
    """

    code = ErrorCode.FIREWALL_FAILED


class DiskFullError(VzError):
    """The node ran out of disk space (or inodes, or quota)."""

    code = ErrorCode.DISK_FULL


class PermissionDeniedError(VzError):
    """The node's user may not do this (often: vzslave is not running as root)."""

    code = ErrorCode.PERMISSION_DENIED


class BusyError(VzError):
    """Another request holds what this one needs; try again later."""

    code = ErrorCode.BUSY


class IOFailureError(VzError):
    """An I/O error other than a full disk or a denied permission."""

    code = ErrorCode.IO_ERROR


class InternalError(VzError):
    """A bug in vzslave; the node's log has the traceback."""

    code = ErrorCode.INTERNAL


# Each code's class: the direct subclasses of VzError that name a code (every one above).
CODE_TO_ERROR: Dict[ErrorCode, Type[VzError]] = {
    cls.code: cls for cls in VzError.__subclasses__() if cls.code is not None}

# OSError errno -> the VzError class the wire point uses when domain code lets one escape.
ERRNO_TO_ERROR: Dict[int, Type[VzError]] = {
    errno.ENOSPC: DiskFullError,
    errno.EDQUOT: DiskFullError,
    errno.EACCES: PermissionDeniedError,
    errno.EPERM: PermissionDeniedError,
    errno.EROFS: PermissionDeniedError,
    errno.EBUSY: BusyError,
}


def error_from_code(code: int, message: str, details: Optional[Dict[str, Any]] = None) -> VzError:
    """The exception for a wire error: the class of ``code``, or VzError if unknown."""
    try:
        cls = CODE_TO_ERROR[ErrorCode(code)]
    except ValueError:
        return VzError(message, dict(details or {}, code=code))
    return cls(message, details)


def code_name(code: int) -> str:
    """The name of wire code ``code`` (``NO_SUCH_IMAGE``); UNKNOWN if this side lacks it."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return "UNKNOWN"


def error_from_os(exc: OSError, doing: str) -> VzError:
    """Wrap an OSError as the VzError of its errno, saying what was being done."""
    cls = ERRNO_TO_ERROR.get(exc.errno or 0, IOFailureError)
    where = " ({})".format(exc.filename) if exc.filename else ""
    return cls("{}: {}{}".format(doing, exc.strerror or exc, where), {"errno": exc.errno})

