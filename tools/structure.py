#!/usr/bin/env python3
"""Figures of the code's shape, for a closing note or a review (run by hand).

    python3 tools/structure.py [ROOT]

Prints, for the packages vzslave and vzmaster: the number of modules, the largest
module and the longest function (lines), the private names (``_x``) one module imports
from another or reaches in it (``other._x``), and the import cycles between modules
(imports inside functions count: they are edges all the same). Reads the source with
``ast``; imports nothing of vz.
"""

import ast
import os
import sys
from typing import Dict, List, Set, Tuple

PACKAGES = ("vzslave", "vzmaster")


def modules(root: str) -> Dict[str, str]:
    """Dotted module name -> path, for every .py file of the packages."""
    found = {}
    for package in PACKAGES:
        for directory, _, files in os.walk(os.path.join(root, package)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(directory, name)
                dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                found[dotted[:-len(".__init__")] if dotted.endswith(".__init__")
                      else dotted] = path
    return found


def imports(tree: ast.AST, module: str, known: Set[str]) -> List[Tuple[str, str]]:
    """(imported module, imported name or "") for every import of a known module."""
    found = []
    package = module if module in PACKAGES or module.count(".") == 0 else \
        module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if alias.name in known]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            base = node.module
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + [node.module])
            for alias in node.names:
                if base + "." + alias.name in known:
                    found.append((base + "." + alias.name, ""))
                elif base in known:
                    found.append((base, alias.name))
    return found


def module_aliases(tree: ast.AST, known: Set[str]) -> Dict[str, str]:
    """Local name -> module, for ``import a.b as x`` and ``from a import b`` of modules."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known and alias.asname:
                    found[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if node.module + "." + alias.name in known:
                    found[alias.asname or alias.name] = node.module + "." + alias.name
    return found


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main() -> None:
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))
    known = modules(root)
    graph: Dict[str, Set[str]] = {}
    private: List[str] = []
    largest: Tuple[int, str] = (0, "")
    longest: Tuple[int, str] = (0, "")
    for module, path in sorted(known.items()):
        with open(path, encoding="utf-8") as source:
            text = source.read()
        tree = ast.parse(text)
        largest = max(largest, (len(text.splitlines()), module))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                span = (node.end_lineno or node.lineno) - node.lineno + 1
                longest = max(longest, (span, "{}.{}".format(module, node.name)))
        aliases = module_aliases(tree, set(known))
        for target, name in imports(tree, module, set(known)):
            if target != module:
                graph.setdefault(module, set()).add(target)
            if name.startswith("_") and not name.startswith("__") and target != module:
                private.append("{} imports {}.{}".format(module, target, name))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and aliases[node.value.id] != module):
                private.append("{} uses {}.{}".format(module, aliases[node.value.id],
                                                      node.attr))
    print("modules: {}".format(len(known)))
    print("largest module: {} ({} lines)".format(largest[1], largest[0]))
    print("longest function: {} ({} lines)".format(longest[1], longest[0]))
    print("private names imported across modules: {}".format(len(private)))
    for line in private:
        print("  " + line)
    found = cycles(graph)
    print("import cycles: {}".format(len(found)))
    for group in found:
        print("  " + " <-> ".join(group))


if __name__ == "__main__":
    main()
