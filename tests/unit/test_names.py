"""The one name gate."""

import pytest

from vzslave.errors import BadNameError
from vzslave.names import validate_name


@pytest.mark.parametrize("name", ["myapp", "myapp.txz", "a", "App_1.2-3+b", "x" * 64])
def test_good_names_pass_unchanged(name):
    assert validate_name("image", name) == name


@pytest.mark.parametrize("name", [
    "", ".hidden", "..", "../x", "a/b", "-rf", "a b", "a\nb", "x" * 65, "é", "a\x00",
])
def test_bad_names_are_refused(name):
    with pytest.raises(BadNameError):
        validate_name("bundle", name)


def test_a_non_string_name_is_refused_with_its_type():
    with pytest.raises(BadNameError, match="int"):
        validate_name("image", 5)


@pytest.mark.parametrize("name", ["", "a/b", 5], ids=["empty", "slash", "int"])
def test_a_bad_name_says_which_kind_of_name_in_details(name):
    with pytest.raises(BadNameError) as caught:
        validate_name("bundle", name)
    assert caught.value.details == {"kind": "bundle"}
