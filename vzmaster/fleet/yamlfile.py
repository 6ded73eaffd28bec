"""A YAML file read safely, with the line of every key, and its duplicate keys refused.

PyYAML's safe loader builds only plain data, but forgets where each value was and keeps
the last of two equal keys without a word. So the document is composed to PyYAML's
node tree first, walked once to note the line of each mapping key and sequence item
under its key path (``("apps", "web", "ports", 1)``) and to find duplicates, and only
then constructed, by the same loader, from the same tree. Merge keys (``<<: *base``)
work as in PyYAML; a key written beside a merge overrides the merged one, as YAML says,
and is not a duplicate. Nothing here raises: problems come back as (line, message).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Dict, List, Tuple

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

KeyPath = Tuple[Hashable, ...]
Lines = Dict[KeyPath, int]
Problem = Tuple[int, str]  # (line, message)

MAX_NODES = 100_000  # aliases can make a small file a huge tree ("billion laughs")
_MERGE = "tag:yaml.org,2002:merge"


def read_yaml(text: bytes) -> tuple[Any, Lines, list[Problem]]:
    """(data, key path -> line, problems) of one YAML document; data is None on problems.

    The line of a path is that of its key (mappings) or of its item (sequences),
    counted from 1.
    """
    try:
        loader = yaml.SafeLoader(text)  # reads the start: bytes that are not text fail here
    except yaml.YAMLError as exc:
        return None, {}, [(1, f"not YAML text: {str(exc).splitlines()[0]}")]
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, []
        walk = _Walk(loader)
        walk.visit(node, ())
        if walk.problems:
            return None, walk.lines, walk.problems
        return loader.construct_document(node), walk.lines, []
    except yaml.MarkedYAMLError as exc:
        return None, {}, [_syntax_problem(exc)]
    except yaml.YAMLError as exc:  # a ReaderError: bytes that are not UTF-8 or UTF-16
        return None, {}, [(1, f"not YAML text: {str(exc).splitlines()[0]}")]
    finally:
        loader.dispose()


def line_of(lines: Lines, path: KeyPath) -> int:
    """The line of ``path``, else of its nearest parent the file shows; else 1."""
    for length in range(len(path), 0, -1):
        if path[:length] in lines:
            return lines[path[:length]]
    return 1


def dotted(path: KeyPath) -> str:
    """``apps.web.ports[1]``: keys joined by dots, list indices in brackets."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif isinstance(part, str) and part and all(c.isalnum() or c in "_-" for c in part):
            text += ("." if text else "") + part
        else:
            text += f"[{_scalar(part)}]"
    return text


def _scalar(value: Any) -> str:
    """A key as YAML would write it: true, null, 'a.b'."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value) if isinstance(value, str) else str(value)


def _syntax_problem(exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else 1
    where = f"column {mark.column + 1}: " if mark else ""
    context = ""
    if exc.context:
        context = f" ({exc.context}" + (
            f" on line {exc.context_mark.line + 1}" if exc.context_mark else "") + ")"
    return line, f"YAML syntax error at {where}{exc.problem or 'cannot read it'}{context}"


class _Walk:
    """One pass over the node tree: lines, duplicate keys, alias loops, size."""

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.lines: Lines = {}
        self.problems: List[Problem] = []
        self.count = 0
        self.open: set[int] = set()  # ids of the collections being walked: a loop's test

    def visit(self, node: Node, path: KeyPath) -> None:
        self.count += 1
        if self.count > MAX_NODES:  # named at the top-level key whose value grew too big
            message = f"too big: over {MAX_NODES} values once aliases are expanded"
            if not any(text == message for _, text in self.problems):
                self.problems.append((line_of(self.lines, path[:1]), message))
            return
        if id(node) in self.open:
            self.problems.append((line_of(self.lines, path),
                                  "an alias refers to a value that contains it (a loop)"))
            return
        if isinstance(node, ScalarNode):
            return
        self.open.add(id(node))
        if isinstance(node, MappingNode):
            self._mapping(node, path)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                self.lines[path + (index,)] = item.start_mark.line + 1
                self.visit(item, path + (index,))
        self.open.discard(id(node))

    def _mapping(self, node: MappingNode, path: KeyPath) -> None:
        first: Dict[Hashable, int] = {}
        for key_node, _ in node.value:
            key = None if key_node.tag == _MERGE else self._key(key_node)
            if key is None:
                continue
            line = key_node.start_mark.line + 1
            if key in first:
                self.problems.append((line, f"{dotted(path + (key,))}: duplicate key "
                                            f"(first on line {first[key]}); keep one"))
            else:
                first[key] = line
        self.loader.flatten_mapping(node)  # merged keys first, the written ones after
        for key_node, value_node in node.value:
            key = self._key(key_node)
            if key is None:
                continue
            self.lines[path + (key,)] = key_node.start_mark.line + 1  # the last one wins
            self.visit(value_node, path + (key,))

    def _key(self, key_node: Node) -> Hashable | None:
        """A scalar key's value (``yes`` is True, as when constructed); None otherwise."""
        if not isinstance(key_node, ScalarNode):
            return None  # a list or map as a key: construction refuses it, with its line
        key = self.loader.construct_object(key_node)
        return key if isinstance(key, Hashable) else None
