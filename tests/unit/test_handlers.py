"""Op schemas and version negotiation."""

import pytest

from vzslave.errors import BadRequestError, VersionMismatchError
from vzslave.handlers import OPS, check_args, choose_version


def test_optional_arguments_get_their_defaults():
    assert check_args("image.put", OPS["image.put"], {"name": "a", "size": 1}) == {
        "name": "a", "size": 1, "offset": 0}


def test_booleans_are_not_integers_on_the_wire():
    with pytest.raises(BadRequestError, match="must be an integer"):
        check_args("image.put", OPS["image.put"], {"name": "a", "size": True})


def test_negative_sizes_are_refused():
    with pytest.raises(BadRequestError, match="negative"):
        check_args("image.put", OPS["image.put"], {"name": "a", "size": -1})


def test_the_highest_common_version_is_chosen():
    assert choose_version([1, 7, "x"]) == 1


def test_no_common_version_says_which_each_side_speaks():
    with pytest.raises(VersionMismatchError, match=r"speaks protocol versions \[1\]"):
        choose_version([2, 3])


def test_every_op_is_named_noun_dot_verb_or_hello():
    assert all(name == "hello" or name.count(".") == 1 for name in OPS)
