"""The node contract (``eksml.cluster.node_contract``) is spelled in one place.

Scans the package's source (string constants, docstrings excluded) for the literals that
must come from :mod:`eksml.cluster.node_contract`: the GPU resource and taint, the node-role label key and
its values, and the autoscaler's safe-to-evict annotation. A value spelled again somewhere
else drifts the day the contract changes, and the pods it places stay Pending.
"""

from __future__ import annotations

import ast
from pathlib import Path

from fixtures.source_scan import docstring_ids, string_constants

from eksml.cluster import node_contract as nodes

PACKAGE = Path(nodes.__file__).parents[1]
ROLES = {nodes.TRAIN_ROLE, nodes.INFERENCE_ROLE, nodes.SYSTEM_ROLE}
#: Names whose value is a node role: a string constant assigned, passed or compared to them is a spelling.
ROLE_NAMES = {"node_role", "role"}
#: The contract's own names: defining one elsewhere is a second home even when its value is imported.
CONTRACT_NAMES = {name for name in vars(nodes) if name.isupper()}


def _name(node: ast.AST) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


def spellings(source: str) -> list[tuple[int, str]]:
    """``(line, literal)`` for every place ``source`` spells part of the node contract itself."""
    tree = ast.parse(source)
    docstrings = docstring_ids(tree)
    found: list[tuple[int, str]] = []
    for const in string_constants(tree):
        if id(const) in docstrings:
            continue
        if nodes.GPU_RESOURCE in const.value or nodes.SAFE_TO_EVICT_ANNOTATION in const.value:
            found.append((const.lineno, const.value))
    for node in ast.walk(tree):
        role_values: list[ast.AST] = []
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == nodes.NODE_ROLE_LABEL:
                    found.append((key.lineno, key.value))
                if key is not None and (
                    (isinstance(key, ast.Constant) and key.value == nodes.NODE_ROLE_LABEL)
                    or _name(key) == "NODE_ROLE_LABEL"
                ):
                    role_values.append(value)
        elif isinstance(node, ast.keyword) and node.arg in ROLE_NAMES:
            role_values.append(node.value)
        elif isinstance(node, ast.keyword) and node.arg in {"key", "effect", "value"}:
            if isinstance(node.value, ast.Constant) and node.value.value in {
                nodes.NODE_ROLE_LABEL,
                nodes.GPU_TAINT_VALUE,
                nodes.GPU_TAINT_EFFECT,
            }:
                found.append((node.value.lineno, node.value.value))
        elif isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            found.extend((node.lineno, _name(t)) for t in targets if _name(t) in CONTRACT_NAMES)
            if any(_name(t) in ROLE_NAMES for t in targets) and node.value is not None:
                role_values.append(node.value)
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_name(side) in ROLE_NAMES for side in sides):
                role_values.extend(sides)
        elif isinstance(node, ast.arguments):
            params = [*node.posonlyargs, *node.args]
            defaults = dict(zip(params[len(params) - len(node.defaults) :], node.defaults, strict=True))
            defaults.update({a: d for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True) if d is not None})
            role_values.extend(d for a, d in defaults.items() if a.arg in ROLE_NAMES)
        for value in role_values:
            found.extend((c.lineno, c.value) for c in string_constants(value) if c.value in ROLES)
    return sorted(set(found))


def test_the_node_contract_is_spelled_only_in_its_home():
    spelled = {
        f"{path.relative_to(PACKAGE.parent)}:{line}: {literal!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != Path(nodes.__file__)
        for line, literal in spellings(path.read_text())
    }
    assert not spelled, "import these from eksml.cluster.node_contract instead:\n" + "\n".join(sorted(spelled))


def test_the_scan_finds_each_kind_of_spelling():
    """The scan is what keeps the literals out, so it must recognise every shape they took."""
    source = '''
"""Docstrings may name nvidia.com/gpu and role=train."""
LIMITS = {"nvidia.com/gpu": "1"}
ANNOTATIONS = {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
labels = {"role": "train"}
selector = {NODE_ROLE_LABEL: "system"}
toleration = Toleration(key="role", effect="NoSchedule")
taint = Taint(key=GPU_TAINT_KEY, value="present")
spec = Spec(node_role="inference")
other = Spec(node_role="system" if dedicated else "inference")
node_role: str = "train"
def f(node_role="inference"): return node_role == "train"
TRAIN_ROLE = "train"
fine = {"role_arn": "train", "image": "inference", "split": "train"}
'''
    literals = [literal for _, literal in spellings(source)]
    assert literals.count("nvidia.com/gpu") == 1
    assert literals.count("cluster-autoscaler.kubernetes.io/safe-to-evict") == 1
    assert literals.count("role") == 2
    assert literals.count("train") == 3
    assert literals.count("inference") == 3
    assert literals.count("system") == 2
    assert literals.count("NoSchedule") == 1 and literals.count("present") == 1
    assert literals.count("TRAIN_ROLE") == 1
    assert len(literals) == 15
