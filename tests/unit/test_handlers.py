"""Op schemas and version negotiation."""

import math

import pytest

from vzslave.config import MAX_IMAGE_SIZE
from vzslave.errors import BadRequestError, VersionMismatchError
from vzslave.handlers import OPS, Array, Fixed, Map, Num, check_args, choose_version


def test_optional_arguments_get_their_defaults():
    assert check_args("image.put", OPS["image.put"], {"name": "a", "size": 1}) == {
        "name": "a", "size": 1, "offset": 0}


def test_booleans_are_not_integers_on_the_wire():
    with pytest.raises(BadRequestError, match="must be an integer"):
        check_args("image.put", OPS["image.put"], {"name": "a", "size": True})


def test_negative_sizes_are_refused():
    with pytest.raises(BadRequestError, match="'size' must be an integer from 0 to"):
        check_args("image.put", OPS["image.put"], {"name": "a", "size": -1})


def test_an_image_past_the_node_maximum_is_refused():
    with pytest.raises(BadRequestError, match="'size'"):
        check_args("image.put", OPS["image.put"], {"name": "a", "size": MAX_IMAGE_SIZE + 1})


def test_a_huge_log_keep_is_refused():
    """When container.start got log_keep=10**12, it was stored, and every later
    session's hello spun through a trillion rotated log names."""
    with pytest.raises(BadRequestError, match=r"'log_keep' must be an integer from 0 to 100"):
        check_args("container.start", OPS["container.start"], {"name": "w",
                                                               "log_keep": 10 ** 12})


@pytest.mark.parametrize("grace", [float("inf"), float("nan"), -0.5, 3600.5, 10 ** 20],
                         ids=["inf", "nan", "negative", "past", "huge-int"])
def test_a_grace_that_is_not_a_finite_number_in_range_is_refused(grace):
    """When container.stop got grace=inf it waited forever; NaN slipped past the
    bounds, as NaN compares false with everything."""
    with pytest.raises(BadRequestError, match=r"'grace' must be a number from 0 to 3600"):
        check_args("container.stop", OPS["container.stop"], {"name": "w", "grace": grace})


def test_a_whole_number_of_seconds_is_a_grace():
    args = check_args("container.stop", OPS["container.stop"], {"name": "w", "grace": 3})
    assert args["grace"] == 3.0 and isinstance(args["grace"], float)


def test_limits_are_inclusive():
    args = check_args("container.start", OPS["container.start"], {
        "name": "w", "log_max": 1024, "log_keep": 100})
    assert (args["log_max"], args["log_keep"]) == (1024, 100)
    with pytest.raises(BadRequestError):
        check_args("container.start", OPS["container.start"], {"name": "w", "log_max": 1023})


def test_a_float_is_not_an_integer():
    with pytest.raises(BadRequestError, match="'lines' must be an integer .*, not a float"):
        check_args("container.logs", OPS["container.logs"], {"name": "w", "lines": 5.0})


def test_a_range_error_names_the_argument_and_its_range_in_details():
    with pytest.raises(BadRequestError) as caught:
        check_args("container.logs", OPS["container.logs"], {"name": "w", "lines": 10 ** 6})
    assert caught.value.details == {"argument": "lines", "min": 0, "max": 100000}


def test_a_nil_cursor_means_no_cursor():
    """When container.logs got cursor: nil, it was refused, though the reference
    allows nil."""
    args = check_args("container.logs", OPS["container.logs"], {"name": "w", "cursor": None})
    assert args["cursor"] is None


def test_nil_is_refused_for_an_argument_whose_default_is_not_nil():
    with pytest.raises(BadRequestError, match="'lines' must be an integer .*, not nil"):
        check_args("container.logs", OPS["container.logs"], {"name": "w", "lines": None})


@pytest.mark.parametrize("cursor", [[1], [1, 2, 3], [1, -2], [2 ** 64, 0], [1, 2 ** 63],
                                    [True, 1], "1,2"],
                         ids=["short", "long", "negative", "inode", "offset", "bool", "str"])
def test_a_malformed_cursor_is_refused(cursor):
    with pytest.raises(BadRequestError, match="'cursor'"):
        check_args("container.logs", OPS["container.logs"], {"name": "w", "cursor": cursor})


def test_a_cursor_takes_any_inode_number():
    args = check_args("container.logs", OPS["container.logs"], {
        "name": "w", "cursor": [2 ** 64 - 1, 2 ** 63 - 1]})
    assert args["cursor"] == [2 ** 64 - 1, 2 ** 63 - 1]


def test_every_number_in_every_schema_has_a_finite_range():
    def numbers(spec):
        if isinstance(spec, Num):
            yield spec
        elif isinstance(spec, Array):
            yield from numbers(spec.item)
        elif isinstance(spec, Fixed):
            for item in spec.items:
                yield from numbers(item)
        elif isinstance(spec, Map):
            for item in spec.fields.values():
                yield from numbers(item)
        else:
            assert spec not in (int, float), "a bare number type has no range"

    for op in OPS.values():
        specs = list(op.required.values()) + [spec for spec, _ in op.optional.values()]
        for spec in specs:
            for num in numbers(spec):
                assert math.isfinite(num.low) and math.isfinite(num.high)


def test_the_highest_common_version_is_chosen():
    assert choose_version([1, 7]) == 1


def test_hello_versions_must_be_small_integers():
    with pytest.raises(BadRequestError, match=r"'versions'\[1\] must be an integer"):
        check_args("hello", OPS["hello"], {"versions": [1, "x"]})


def test_no_common_version_says_which_each_side_speaks():
    with pytest.raises(VersionMismatchError, match=r"speaks protocol versions \[1\]"):
        choose_version([2, 3])


def test_no_common_version_lists_the_node_versions_in_details():
    """When no version was in common, the node's versions were only in prose."""
    with pytest.raises(VersionMismatchError) as caught:
        choose_version([2, 3])
    assert caught.value.details == {"versions": [1]}


def test_every_op_is_named_noun_dot_verb_or_hello():
    assert all(name == "hello" or name.count(".") == 1 for name in OPS)


def test_a_runtime_outside_the_choices_is_refused_naming_them():
    with pytest.raises(BadRequestError, match="must be one of builtin, runc, crun, not 'docker'"):
        check_args("container.start", OPS["container.start"], {"name": "w", "runtime": "docker"})


def test_more_runtime_args_than_allowed_are_refused_in_the_schema():
    with pytest.raises(BadRequestError, match="at most 16") as caught:
        check_args("container.start", OPS["container.start"],
                   {"name": "w", "runtime_args": ["--x"] * 17})
    assert caught.value.details == {"argument": "runtime_args"}
