"""The file reads top to bottom: its sections come in the order of style.md's layer diagram, no section uses a
name defined in a section below it (the CLI at the bottom aside), and no run state lives in module globals."""

from __future__ import annotations

import ast
import re
from typing import Dict, List, Set, Tuple

from conftest import SCRIPT

LAYERS = (
    "Constants and the model table",
    "Errors and redaction",
    "Configuration",
    "Images",
    "Local files",
    "Wire formats",
    "Transport",
    "Options",
    "Options to a Job",
    "Cost estimates",
    "Routes",
    "Running",
    "CLI",
)


def sections(lines: List[str]) -> List[Tuple[int, str]]:
    """(first line, layer) of every section banner; sub-banners (`Routes: the Images API`) join their layer."""
    found = []
    for number, line in enumerate(lines, start=1):
        match = re.match(r"# --- (.+?)(?: -+)?$", line)
        if match and not line.startswith("# --- Azure"):
            title = match.group(1)
            layer = next((name for name in sorted(LAYERS, key=len, reverse=True) if title.startswith(name)), title)
            found.append((number, layer))
    return found


def layer_of(found: List[Tuple[int, str]], line: int) -> str:
    return next((name for start, name in reversed(found) if start <= line), "top")


def annotation_nodes(node: ast.AST) -> Set[int]:
    skip: Set[int] = set()
    for sub in ast.walk(node):
        for annotation in (getattr(sub, "annotation", None), getattr(sub, "returns", None)):
            if isinstance(annotation, ast.AST):
                skip.update(id(part) for part in ast.walk(annotation))
    return skip


def test_sections_follow_the_layer_diagram() -> None:
    found = sections(SCRIPT.read_text("utf-8").splitlines())
    layers = [name for _, name in found]
    assert set(layers) == set(LAYERS), set(layers) ^ set(LAYERS)
    firsts = sorted(LAYERS, key=layers.index)
    assert firsts == list(LAYERS), firsts
    assert all(LAYERS.index(a) <= LAYERS.index(b) for a, b in zip(layers, layers[1:])), layers


def test_no_section_uses_a_name_defined_below_it() -> None:
    source = SCRIPT.read_text("utf-8")
    found = sections(source.splitlines())
    rank = {name: LAYERS.index(name) for name in LAYERS}
    tree = ast.parse(source)
    defined: Dict[str, int] = {}
    for node in tree.body:
        targets: List[str] = []
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            targets = [node.name]
        elif isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        for name in targets:
            defined.setdefault(name, node.lineno)
    backwards = []
    for node in tree.body:
        here = layer_of(found, node.lineno)
        if here in ("top", "CLI"):
            continue
        skip = annotation_nodes(node)
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and id(sub) not in skip:
                there = layer_of(found, defined.get(sub.id, 0))
                if sub.id in defined and rank.get(there, -1) > rank.get(here, -1):
                    backwards.append(f"line {sub.lineno} ({here}) uses {sub.id} from {there}")
    assert backwards == [], "\n".join(sorted(set(backwards)))


def test_no_global_statement_and_no_module_state_changed_by_a_function() -> None:
    tree = ast.parse(SCRIPT.read_text("utf-8"))
    module_containers = {
        t.id
        for node in tree.body
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
        and isinstance(node.value, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp))
    }
    changed = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            changed.append(f"line {node.lineno}: global {', '.join(node.names)}")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                call = sub.func if isinstance(sub, ast.Call) else None
                if (
                    isinstance(call, ast.Attribute)
                    and isinstance(call.value, ast.Name)
                    and call.value.id in module_containers
                    and call.attr in ("append", "extend", "add", "update", "clear", "pop", "remove", "discard")
                ):
                    changed.append(f"line {sub.lineno}: {node.name} changes {call.value.id}")
                if isinstance(sub, (ast.Assign, ast.AugAssign, ast.Delete)):
                    for target in sub.targets if isinstance(sub, (ast.Assign, ast.Delete)) else [sub.target]:
                        if (
                            isinstance(target, ast.Subscript)
                            and isinstance(target.value, ast.Name)
                            and target.value.id in module_containers
                        ):
                            changed.append(f"line {sub.lineno}: {node.name} changes {target.value.id}")
    assert changed == [], "\n".join(changed)
