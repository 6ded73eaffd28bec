"""YAML read safely, with the line of every key; duplicates, loops and bombs refused."""

from vzmaster.fleet import yamlfile
from vzmaster.fleet.yamlfile import dotted, line_of, read_yaml


def test_every_key_and_item_has_its_line():
    data, lines, problems = read_yaml(b"a:\n  b: 1\n  c:\n    - x\n    - {d: 2}\n")
    assert (data, problems) == ({"a": {"b": 1, "c": ["x", {"d": 2}]}}, [])
    assert lines == {("a",): 1, ("a", "b"): 2, ("a", "c"): 3, ("a", "c", 0): 4,
                     ("a", "c", 1): 5, ("a", "c", 1, "d"): 5}


def test_a_duplicate_key_is_a_problem_at_the_second():
    data, _, problems = read_yaml(b"a: 1\nb:\n  c: 1\n  c: 2\n")
    assert data is None
    assert problems == [(4, "b.c: duplicate key (first on line 3); keep one")]


def test_keys_that_yaml_reads_as_equal_are_duplicates():
    assert read_yaml(b"yes: 1\ntrue: 2\n")[2] == [
        (2, "[true]: duplicate key (first on line 1); keep one")]


def test_a_merged_key_overridden_beside_the_merge_is_no_duplicate():
    data, lines, problems = read_yaml(b"base: &b {x: 1, y: 2}\nn:\n  <<: *b\n  y: 3\n")
    assert (data["n"], problems) == ({"x": 1, "y": 3}, [])
    assert (lines[("n", "x")], lines[("n", "y")]) == (1, 4)


def test_a_syntax_error_gives_the_library_s_line_and_column():
    assert read_yaml(b"a: [1, 2\nb: 3\n")[2] == [
        (2, "YAML syntax error at column 2: expected ',' or ']', but got ':' (while "
            "parsing a flow sequence on line 1)")]


def test_bytes_that_are_not_text_are_a_problem():
    assert read_yaml(b"a: \xff\xfe\xfd\n")[2] == [
        (1, "not YAML text: unacceptable character #x00ff: invalid start byte")]


def test_an_alias_bomb_is_refused_before_it_is_built(monkeypatch):
    monkeypatch.setattr(yamlfile, "MAX_NODES", 1000)
    text = b"a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
    for name, previous in zip("bcd", "abc"):
        text += f"{name}: &{name} [*{previous}, *{previous}, *{previous}, *{previous}, " \
                f"*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, " \
                f"*{previous}]\n".encode()
    data, _, problems = read_yaml(text)
    assert data is None
    assert problems == [(3, "too big: over 1000 values once aliases are expanded")]


def test_an_empty_document_is_none_without_problems():
    assert read_yaml(b"# nothing\n") == (None, {}, [])


def test_the_line_of_a_path_the_file_lacks_is_its_nearest_parent_s():
    lines = {("apps",): 3, ("apps", "web"): 4}
    assert line_of(lines, ("apps", "web", "build", "args")) == 4
    assert line_of(lines, ("name",)) == 1


def test_a_path_shows_keys_dotted_and_indices_in_brackets():
    assert dotted(("apps", "web", "ports", 1)) == "apps.web.ports[1]"
    assert dotted(("nodes", "web1.example.com", "host")) == "nodes['web1.example.com'].host"
    assert dotted(("env", True)) == "env[true]"
