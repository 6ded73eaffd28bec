"""The output layer of the vzmaster command: tables, text and one JSON document."""

import io
import json

import pytest

from vzmaster.output import Output, OutputClosed, Shown, View


def view(name, size=1):
    return View({"name": name, "size": size}, {"name": name, "size": str(size)},
                "{} ({} bytes)".format(name, size))


def output(hosts=("",), json_mode=False, together=False):
    out, err = io.StringIO(), io.StringIO()
    return Output(json_mode=json_mode, hosts=hosts, together=together, stdout=out,
                  stderr=err), out, err


def test_a_listing_is_a_table_under_its_columns():
    shown, out, _ = output()
    shown.show("", Shown([view("a"), view("bb", 22)], ("name", "size")))
    assert out.getvalue() == "NAME  SIZE\na     1\nbb    22\n"


def test_an_empty_listing_still_shows_its_columns():
    shown, out, _ = output()
    shown.show("", Shown([], ("name", "size")))
    assert out.getvalue() == "NAME  SIZE\n"


def test_a_record_alone_is_its_text():
    shown, out, _ = output()
    shown.show("", Shown([view("a")]))
    assert out.getvalue() == "a (1 bytes)\n"


def test_a_record_without_text_alone_is_a_table_of_its_row():
    shown, out, _ = output()
    shown.show("", Shown([View({}, {"state": "running"})]))
    assert out.getvalue() == "STATE\nrunning\n"


def test_one_host_prints_its_listing_as_an_array_and_a_record_as_an_object():
    shown, out, _ = output(json_mode=True)
    shown.show("", Shown([view("a")], ("name",)))
    shown.show("", Shown([view("b")]))
    decoder = json.JSONDecoder()
    first, end = decoder.raw_decode(out.getvalue())
    assert first == [{"name": "a", "size": 1}]
    assert json.loads(out.getvalue()[end:]) == {"name": "b", "size": 1}


def test_several_hosts_print_one_json_array_with_each_record_naming_its_host():
    shown, out, _ = output(hosts=("n1", "n2"), json_mode=True)
    shown.show("n1", Shown([view("a"), view("b")], ("name",)))
    shown.show("n2", Shown([view("c")]))
    assert out.getvalue() == ""  # one document, at the end
    shown.finish()
    assert json.loads(out.getvalue()) == [
        {"host": "n1", "name": "a", "size": 1}, {"host": "n1", "name": "b", "size": 1},
        {"host": "n2", "name": "c", "size": 1}]


def test_several_hosts_that_show_nothing_print_no_json():
    shown, out, _ = output(hosts=("n1", "n2"), json_mode=True)
    shown.finish()
    assert out.getvalue() == ""


def test_several_hosts_in_text_get_a_header_each_but_not_in_json():
    text, out, _ = output(hosts=("n1", "n2"))
    text.header("n1")
    as_json, json_out, _ = output(hosts=("n1", "n2"), json_mode=True)
    as_json.header("n1")
    assert out.getvalue() == "== n1\n" and json_out.getvalue() == ""


class Recorder(io.StringIO):
    """A stream that notes its writes and flushes in a list shared with another."""

    def __init__(self, name, events):
        super().__init__()
        self.name, self.events = name, events

    def write(self, text):
        self.events.append((self.name, "write", text))
        return super().write(text)

    def flush(self):
        self.events.append((self.name, "flush"))


def test_an_error_comes_after_what_stdout_holds_and_names_its_host():
    events = []
    shown = Output(json_mode=False, hosts=("n1", "n2"), stdout=Recorder("out", events),
                   stderr=Recorder("err", events))
    shown.header("n2")
    shown.error("n2", "NO_SUCH_IMAGE: no image named 'x'")
    assert events.index(("out", "flush")) < events.index(
        ("err", "write", "vzmaster: n2: NO_SUCH_IMAGE: no image named 'x'\n"))


def test_an_error_of_this_machine_names_no_host():
    shown, _, err = output()
    shown.error("", "not an ELF program")
    assert err.getvalue() == "vzmaster: not an ELF program\n"


class ClosedPipe(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_pipe_is_output_closed_and_nothing_more_is_tried():
    shown = Output(json_mode=False, stdout=ClosedPipe(), stderr=io.StringIO())
    with pytest.raises(OutputClosed):
        shown.show("", Shown([view("a")]))
    shown.line("", "more")  # dropped, not raised again


def test_lines_of_hosts_followed_together_carry_their_host_aligned():
    shown, out, _ = output(hosts=("n1", "node2"), together=True)
    shown.line("n1", "hello")
    shown.line("node2", "world")
    assert out.getvalue() == "n1    | hello\nnode2 | world\n"


def test_lines_of_one_host_are_as_they_came():
    shown, out, _ = output(hosts=("n1", "n2"))
    shown.line("n1", "hello")
    assert out.getvalue() == "hello\n"


def test_after_stop_nothing_is_printed_from_any_thread():
    shown, out, err = output(hosts=("n1", "n2"))
    shown.stop()
    shown.line("n1", "late")
    shown.error("n2", "late too")
    assert out.getvalue() == err.getvalue() == ""
