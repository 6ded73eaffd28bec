"""One error root on the master side: the families under it, their names and pickling."""

import os
import pickle
import subprocess
import sys

import pytest

import vzmaster
from vzmaster import errors
from vzmaster.fleet.config import ConfigError
from vzmaster.fleet.inventory import InventoryError
from vzmaster.imaging.errors import BuildError
from vzmaster.testing.box import BoxError
from vzslave.errors import Error, VzError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPORTED_ERRORS = sorted(name for name in vzmaster.__all__
                         if isinstance(getattr(vzmaster, name), type)
                         and issubclass(getattr(vzmaster, name), BaseException))


@pytest.mark.parametrize("family", [VzError, errors.TransportError, BuildError, ConfigError,
                                    InventoryError, BoxError],
                         ids=lambda c: c.__name__)
def test_every_family_hangs_straight_from_the_one_root(family):
    assert family.__bases__ == (Error,)


def test_every_exception_vzmaster_exports_is_under_the_root():
    assert EXPORTED_ERRORS and all(issubclass(getattr(vzmaster, name), Error)
                                   for name in EXPORTED_ERRORS)


def test_the_tree_drawn_in_the_docstring_names_every_family_and_transport_error():
    drawn = errors.__doc__
    transport_errors = [value.__name__ for value in vars(errors).values()
                        if isinstance(value, type) and issubclass(value, Error)
                        and value is not Error]
    for name in transport_errors + ["Error", "VzError", "BuildError", "ConfigError",
                                    "InventoryError", "BoxError"]:
        assert "── " + name + " " in drawn, name


@pytest.mark.parametrize("name", EXPORTED_ERRORS)
def test_an_exported_exception_shows_vzmaster_as_its_module(name):
    assert getattr(vzmaster, name).__module__ == "vzmaster"


@pytest.mark.parametrize("name", EXPORTED_ERRORS)
def test_an_exported_exception_pickles_back_to_its_class_with_its_message(name):
    cls = getattr(vzmaster, name)
    back = pickle.loads(pickle.dumps(cls("what happened")))
    assert type(back) is cls and back.message == "what happened"


def test_a_node_error_pickles_back_with_its_details():
    back = pickle.loads(pickle.dumps(vzmaster.DiskFullError("full", {"free": 0})))
    assert (back.message, back.details) == ("full", {"free": 0})


def test_the_node_keeps_its_own_module_name_for_its_errors():
    """When vzmaster is not there (a node), the classes say vzslave.errors."""
    code = ("import sys; sys.modules['vzmaster'] = None\n"
            "from vzslave.errors import NoSuchImageError\n"
            "assert NoSuchImageError.__module__ == 'vzslave.errors', NoSuchImageError.__module__\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_a_node_refusal_is_described_with_its_codes_name():
    from vzslave.errors import NoSuchAppError
    assert errors.describe(NoSuchAppError("no app web")) == "NO_SUCH_APP: no app web"


def test_a_failed_health_check_is_described_with_the_log_the_node_sent():
    from vzslave.errors import HealthCheckError
    text = errors.describe(HealthCheckError("tcp 8080 refused", {"log": "a\nb\n"}))
    assert text == "HEALTH_FAILED: tcp 8080 refused\nlast lines of its log:\n  a\n  b"


def test_a_failure_on_this_side_is_its_message():
    assert errors.describe(errors.ConnectionLostError("the link dropped")) == "the link dropped"
