"""The result records on the wire: to_wire, from_wire and the fields added later."""

import pytest

from vzslave.errors import BadFrameError
from vzslave.records import ContainerStatus, ImageInfo, from_wire, optional_from_wire, to_wire

IMAGE = ImageInfo("web.tar", 3, "ab" * 32, "tar", 1.5)


def status_fields(**changes):
    fields = dict(name="web", state="running", pid=7, uptime=1.0, restarts=0,
                  last_exit=None, last_error=None, next_retry=None, supervisor="sysvinit",
                  runtime="builtin", entry="v000:2345:respawn:/x web", bundle="/b",
                  log="/l", last_run=2.0, warnings=["w"])
    fields.update(changes)
    return fields


def test_a_record_round_trips_through_its_wire_map():
    assert from_wire(ImageInfo, to_wire(IMAGE)) == IMAGE


def test_keys_a_newer_node_added_are_ignored():
    assert from_wire(ImageInfo, dict(to_wire(IMAGE), colour="blue")) == IMAGE


def test_a_missing_field_is_a_bad_frame_naming_it():
    wire = to_wire(IMAGE)
    del wire["sha256"]
    with pytest.raises(BadFrameError, match="ImageInfo: missing sha256"):
        from_wire(ImageInfo, wire)


def test_fields_added_later_take_their_defaults_from_an_older_node():
    wire = status_fields()
    del wire["last_run"], wire["warnings"]
    status = from_wire(ContainerStatus, wire)
    assert status.last_run is None and status.warnings == []


def test_a_record_must_be_a_map_and_nil_stays_nil():
    with pytest.raises(BadFrameError, match="expected a map"):
        from_wire(ImageInfo, ["web.tar"])
    assert optional_from_wire(ImageInfo, None) is None
