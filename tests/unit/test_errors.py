"""One error vocabulary: codes, classes and their conversions."""

import errno

import pytest

from vzmaster import errors
from vzslave import errors as errors_module
from vzslave.errors import (
    CODE_TO_ERROR,
    DiskFullError,
    Error,
    ErrorCode,
    IOFailureError,
    PermissionDeniedError,
    VzError,
    code_name,
    error_from_code,
    error_from_os,
)


def test_every_code_has_exactly_one_class():
    assert set(CODE_TO_ERROR) == set(ErrorCode)
    assert len(set(CODE_TO_ERROR.values())) == len(ErrorCode)


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.name)
def test_every_code_round_trips_to_its_class(code):
    exc = error_from_code(int(code), "message", {"k": 1})
    assert type(exc) is CODE_TO_ERROR[code]
    assert exc.code_number == code
    assert (exc.message, exc.details) == ("message", {"k": 1})


def test_an_unknown_code_becomes_the_base_class_and_keeps_its_number():
    exc = error_from_code(777, "from the future")
    assert type(exc) is VzError
    assert exc.code_number == 777


def test_codes_are_grouped_by_decade():
    decades = {code.value // 10 for code in ErrorCode}
    assert decades <= {1, 2, 3, 4, 5, 8, 9}


@pytest.mark.parametrize("number,cls", [
    (errno.ENOSPC, DiskFullError), (errno.EDQUOT, DiskFullError),
    (errno.EACCES, PermissionDeniedError), (errno.EIO, IOFailureError),
])
def test_os_errors_map_by_errno(number, cls):
    exc = error_from_os(OSError(number, "boom", "/some/file"), "writing")
    assert type(exc) is cls
    assert "writing: boom (/some/file)" == exc.message


def test_remote_and_transport_errors_are_separate_families():
    assert not issubclass(errors.TransportError, VzError)
    assert issubclass(errors.ProtocolError, errors.TransportError)
    assert issubclass(errors.HostKeyChangedError, errors.HostKeyError)


def test_every_vz_error_class_of_the_module_is_found_for_its_code():
    """CODE_TO_ERROR is derived from the subclasses: none can be left out of it."""
    classes = {value for value in vars(errors_module).values()
               if isinstance(value, type) and issubclass(value, VzError) and value is not VzError}
    assert set(CODE_TO_ERROR.values()) == classes
    assert all(code is cls.code for code, cls in CODE_TO_ERROR.items())


@pytest.mark.parametrize("code,name", [(20, "NO_SUCH_IMAGE"), (99, "INTERNAL"), (777, "UNKNOWN")])
def test_code_name_names_a_code_and_says_unknown_for_one_this_side_lacks(code, name):
    assert code_name(code) == name


def test_vz_errors_hang_under_the_one_root_and_carry_a_message():
    exc = DiskFullError("no room", {"free": 0})
    assert isinstance(exc, Error) and exc.message == "no room" and str(exc) == "no room"
