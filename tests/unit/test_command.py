"""What vzslave and vz-supervisor share: the --root option and the log file."""

import logging
import uuid

import pytest

from vzslave.command import argument_parser, log_to_file
from vzslave.config import DEFAULT_ROOT


@pytest.fixture
def logger():
    """A logger of its own, its handlers closed after the test."""
    made = logging.getLogger("vz-test-" + uuid.uuid4().hex)
    made.propagate = False
    yield made
    for handler in list(made.handlers):
        handler.close()
        made.removeHandler(handler)


def test_a_node_command_takes_root_with_its_default():
    parser = argument_parser("vzslave", "the node agent")
    assert parser.parse_args([]).root == DEFAULT_ROOT
    assert parser.parse_args(["--root", "/srv/vz"]).root == "/srv/vz"
    assert parser.prog == "vzslave"


def test_records_go_to_the_file_with_the_commands_name_and_pid(tmp_path, logger):
    path = tmp_path / "vzslave.log"
    log_to_file(logger, str(path), "vz-supervisor")
    logger.info("started")
    logger.debug("not kept")
    line = path.read_text().splitlines()
    assert len(line) == 1 and " vz-supervisor[" in line[0]
    assert line[0].endswith("] INFO started")


def test_a_log_past_its_limit_becomes_the_one_older_generation(tmp_path, logger):
    path = tmp_path / "vzslave.log"
    path.write_text("x" * 100)
    (tmp_path / "vzslave.log.1").write_text("oldest")
    log_to_file(logger, str(path), "vzslave", rotate_over=99)
    assert (tmp_path / "vzslave.log.1").read_text() == "x" * 100
    assert path.read_text() == ""


def test_a_log_within_its_limit_stays(tmp_path, logger):
    path = tmp_path / "vzslave.log"
    path.write_text("x" * 99)
    log_to_file(logger, str(path), "vzslave", rotate_over=99)
    assert path.read_text() == "x" * 99 and not (tmp_path / "vzslave.log.1").exists()


def test_a_log_that_cannot_open_falls_back_to_warnings_on_stderr(tmp_path, logger, capsys):
    log_to_file(logger, str(tmp_path / "missing" / "vzslave.log"), "vzslave")
    logger.info("quiet")
    logger.warning("loud")
    err = capsys.readouterr().err
    assert "loud" in err and "quiet" not in err


def test_echo_copies_records_to_stderr(tmp_path, logger, capsys):
    log_to_file(logger, str(tmp_path / "supervisor.log"), "vz-supervisor", echo=True)
    logger.info("started")
    assert capsys.readouterr().err == "started\n"
    assert (tmp_path / "supervisor.log").read_text().endswith("INFO started\n")
