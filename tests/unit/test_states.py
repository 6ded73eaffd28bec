"""The states of a container, and how status derives its state from the others."""

import os
import re

import pytest

from tests.conftest import modules_loaded_by
from vzslave.states import ContainerState, Mark, RunState, Wanted, derive

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNING_RECORD = {"state": RunState.RUNNING, "pid": "12"}


@pytest.mark.parametrize("wanted", [None, Wanted.STOPPED, "garbage"])
def test_a_container_not_wanted_running_is_stopped_whatever_else_holds(wanted):
    assert derive(wanted, True, RUNNING_RECORD, True) == ContainerState.STOPPED


def test_a_wanted_container_without_an_active_entry_is_disabled():
    assert derive(Wanted.RUNNING, False, RUNNING_RECORD, True) == ContainerState.DISABLED


def test_an_entry_without_a_run_record_yet_is_starting():
    assert derive(Wanted.RUNNING, True, {}, False) == ContainerState.STARTING


@pytest.mark.parametrize("state", [RunState.WAITING, RunState.FAILED])
def test_a_runner_waiting_out_a_backoff_or_failing_is_crash_looping(state):
    assert derive(Wanted.RUNNING, True, {"state": state}, True) == (
        ContainerState.CRASH_LOOPING)


def test_a_running_record_whose_process_lives_is_running():
    assert derive(Wanted.RUNNING, True, RUNNING_RECORD, True) == ContainerState.RUNNING


@pytest.mark.parametrize("record,alive", [(RUNNING_RECORD, False),
                                          ({"state": RunState.EXITED}, True),
                                          ({"pid": "12"}, True)])
def test_anything_else_is_between_two_instances(record, alive):
    """When the recorded process is gone (or not the one recorded), the app exited, or
    the record says no state, init is about to spawn the runner again."""
    assert derive(Wanted.RUNNING, True, record, alive) == ContainerState.RESTARTING


def test_each_vocabulary_has_distinct_values():
    for values in (ContainerState.ALL, RunState.ALL, Mark.ALL):
        assert len(set(values)) == len(values)


def test_the_protocol_reference_lists_exactly_the_container_states():
    with open(os.path.join(ROOT, "docs", "protocol.md")) as doc:
        text = doc.read()
    record = text[text.index("`Status` record:"):]
    states = record[record.index("`state` (str:"):record.index("`pid` (int|nil")]
    assert set(re.findall(r"`([a-z-]+)`", states)) - {"state", "next_retry",
                                                      "last_error"} == set(ContainerState.ALL)


def test_importing_the_states_loads_only_the_runners_leaf():
    """Anything may name a state, the runner's side included: no typing, no enum."""
    assert modules_loaded_by("vzslave.states") <= {"vzslave", "vzslave.states",
                                                   "vzslave.runio"}
