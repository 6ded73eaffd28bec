"""vz.yml's models: strict values, the node's own limits, plain-word problems."""

import pytest

from vzmaster.fleet import schema
from vzmaster.fleet.schema import (FleetModel, Port, fields_at, parse_port, parse_size, show,
                                   validate)
from vzslave import handlers, plans


def test_validate_returns_the_model_or_the_problems_never_raising():
    model, problems = validate(FleetModel, {"name": "shop"})
    assert (model.name, problems) == ("shop", [])
    assert validate(FleetModel, {"nodes": {"fra1": {"host": 1}}}) == (
        None, [(("nodes", "fra1", "host"), "expected text, got 1: quote it ('1')")])


def test_a_bad_mapping_key_is_reported_at_the_key_itself():
    assert validate(FleetModel, {"nodes": {7: {"host": "a"}}})[1] == [
        (("nodes", 7), "expected text, got 7: quote it ('7')")]


def test_the_keys_allowed_at_a_path_are_the_model_s_fields():
    assert fields_at(FleetModel, ("apps", "web", "health")) == [
        "tcp", "http", "cmd", "timeout", "interval", "min_uptime"]
    assert fields_at(FleetModel, ("apps", "web", "env")) == []


@pytest.mark.parametrize("value, port", [(22, Port(22, "tcp")), ("22", Port(22, "tcp")),
                                         ("53/udp", Port(53, "udp"))])
def test_a_port_parses_from_a_number_or_text(value, port):
    assert parse_port(value) == port


@pytest.mark.parametrize("value", [True, 0, "22/sctp", "http", 2.5])
def test_what_is_not_a_port_is_refused(value):
    with pytest.raises(ValueError):
        parse_port(value)


@pytest.mark.parametrize("value, size", [(4096, 4096), ("1k", 1024), ("1 KiB", 1024),
                                         ("3MB", 3 * 1024 ** 2), ("1g", 1024 ** 3)])
def test_a_size_parses_in_powers_of_1024(value, size):
    assert parse_size(value) == size


@pytest.mark.parametrize("value", [True, 1.5, "ten", "1024 bytes", "1P"])
def test_what_is_not_a_size_is_refused(value):
    with pytest.raises(ValueError, match="expected a size"):
        parse_size(value)


def test_values_show_as_yaml_writes_them():
    assert [show(v) for v in (None, True, 3, "x", [1], {})] == [
        "null", "true", "3", "'x'", "a list", "a mapping"]


def test_the_start_options_and_their_limits_are_the_node_s():
    runtimes = schema.StartModel.model_fields["runtime"].annotation
    assert set(plans.RUNTIMES) == set(runtimes.__args__[0].__args__)
    options = handlers.START_OPTIONS
    assert set(schema.StartModel.model_fields) == set(options)
    assert (options["log_max"][0].low, options["log_max"][0].high) == schema.LOG_MAX
    assert (options["log_keep"][0].low, options["log_keep"][0].high) == (0, 100)
    assert options["runtime_args"][0].max_len == plans.MAX_RUNTIME_ARGS == 16
