"""Each cross-cutting contract of the package and the images is spelled in its home only.

The node contract has its own scan (``test_node_contract.py``); this one keeps the others in
their homes: the files of a model version, the cluster roles and modes, the SageMaker instance
types, the data-URI pattern, the timestamp of store paths, yes/no parsing, the data set's file
names, the IDX decoding, the training defaults and the node-group state record. A contract
spelled a second time drifts the day the first spelling changes (a renamed plot that the version
page stops serving, a new cluster mode one operator refuses).

The scan reads the package's and the images' source (``plugins/eksml``, ``images``; paths are
relative to the repository) as Python syntax: string constants (f-string parts
included, docstrings excluded; comments are not in the tree), collection literals, names bound
to a value, definitions and record classes. ``test_the_scan_finds_*`` run it on samples, since
a scan that finds nothing would pass forever.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures.source_scan import docstring_ids, string_constants

import eksml
from eksml import contract, layout, settings
from eksml.cluster import node_contract as nodes
from eksml.sagemaker import instances

PACKAGE = Path(eksml.__file__).parent
ROOT = PACKAGE.parents[1]
#: What the scan reads: the Airflow side's package and the images, which share one contract.
SCANNED = (PACKAGE, ROOT / "images")
#: The images' side of the contract and the Airflow side's door to it.
IMAGE_CONTRACT = ("images/common/trainkit/contract.py", "plugins/eksml/contract.py")


@dataclass(frozen=True)
class Contract:
    """What spells a contract, and the files allowed to (paths relative to the package)."""

    name: str
    home: tuple[str, ...]
    #: A string constant containing one of these spells the contract.
    substrings: tuple[str, ...] = ()
    #: A string constant equal to one of these spells it, wherever it stands.
    exact: frozenset[str] = frozenset()
    #: A string constant matching this (whole) spells it.
    pattern: re.Pattern[str] | None = None
    #: Values of an enumeration: spelled when bound to a name in ``contexts`` (keyword, default,
    #: assignment, comparison), or when ``collection`` or more of them stand in one literal.
    values: frozenset[str] = frozenset()
    contexts: frozenset[str] = frozenset()
    collection: int = 0
    #: Defining one of these names (assignment, function, class) outside the home is a second home.
    names: frozenset[str] = frozenset()
    #: A class annotating all of these fields is a second home of the record.
    fields: frozenset[str] = frozenset()


CONTRACTS = (
    Contract(
        "model-version files",
        home=(*IMAGE_CONTRACT, "plugins/eksml/layout.py"),
        substrings=(contract.METRICS, contract.HISTORY, contract.EVALUATION, contract.METADATA, *contract.PLOTS),
        names=frozenset(
            {"METRICS", "EVALUATION", "METADATA", "PLOTS", "READABLE", "SERVED", "COMPLETION_MARKER"}
            | {"METRICS_FILE", "HISTORY_FILE"}
            | {"TRAINING_CURVES", "CONFUSION_MATRIX", "PER_CLASS_ACCURACY"}
            | {"ModelVersion", "candidate_accuracy", "recorded_accuracy", "version_expectations"}
        ),
    ),
    Contract(
        "cluster modes",
        home=("plugins/eksml/cluster/node_contract.py",),
        exact=frozenset(nodes.CLUSTER_MODES),
        names=frozenset({"CLUSTER_MODES", "EXISTING_CLUSTER", "EPHEMERAL_CLUSTER"}),
    ),
    Contract(
        "cluster roles",
        home=("plugins/eksml/cluster/node_contract.py",),
        values=frozenset(nodes.CLUSTER_ROLES),
        contexts=frozenset({"cluster_role"}),
        collection=2,
        names=frozenset({"CLUSTER_ROLES", "SHARED_CLUSTER", "TRAINING_CLUSTER", "INFERENCE_CLUSTER"}),
    ),
    Contract(
        "SageMaker instance types",
        # prices.py is a dated price list keyed by the types it prices; the test below checks
        # that it prices only accepted types.
        home=("plugins/eksml/sagemaker/instances.py", "plugins/eksml/prices.py"),
        pattern=re.compile(r"ml\.[a-z0-9]+\.[a-z0-9]+"),
        names=frozenset(
            {"TRAINING_INSTANCE_GPUS", "OFFERED_TRAINING_TYPES", "SAGEMAKER_INSTANCE_TYPES"}
            | {"DEFAULT_TRAINING_TYPE", "FALLBACK_TRAINING_TYPE", "DEFAULT_INSTANCE_TYPE"}
        ),
    ),
    Contract(
        "data-URI pattern",
        home=("plugins/eksml/layout.py",),
        substrings=("[a-z0-9][a-z0-9.",),
        names=frozenset({"DATA_URI", "BUCKET_NAME", "S3_BUCKET", "_BUCKET_RE", "data_uri_problem"}),
    ),
    Contract(
        "store timestamp",
        home=("plugins/eksml/layout.py",),
        substrings=(layout.STAMP,),
        names=frozenset({"STAMP", "_STAMP"}),
    ),
    Contract(
        "yes/no parsing",
        home=IMAGE_CONTRACT,
        values=frozenset({"true", "false", "yes", "no", "on", "off"}),
        collection=2,
        names=frozenset({"parse_bool", "_as_bool"}),
    ),
    Contract(
        "Fashion-MNIST file names",
        home=IMAGE_CONTRACT,
        substrings=("-idx3-ubyte", "-idx1-ubyte", "manifest.json"),
        names=frozenset({"TRAIN_IMAGES", "TRAIN_LABELS", "TEST_IMAGES", "TEST_LABELS", "IDX_FILES", "IDX_RANKS"})
        | {"MANIFEST"},
    ),
    Contract(
        "IDX decoding",
        home=IMAGE_CONTRACT,
        names=frozenset({"IDX_MAGIC", "_MAGIC", "IdxError", "IMAGE_SHAPE", "NUM_CLASSES", "IMAGE_SIDE"}),
    ),
    Contract(
        "training defaults",
        home=IMAGE_CONTRACT,
        names=frozenset({"DEFAULT_EPOCHS", "MAX_EPOCHS", "DEFAULT_BATCH_SIZE", "DEFAULT_LEARNING_RATE"}),
    ),
    Contract(
        "server-side apply field manager",
        home=("plugins/eksml/cluster/apply.py",),
        names=frozenset({"FIELD_MANAGER"}),
    ),
    Contract(
        "node-group state",
        home=("plugins/eksml/cluster/config.py",),
        fields=frozenset({"name", "status", "min_size", "desired", "max_size"}),
        names=frozenset({"NodegroupState", "NodegroupInfo"}),
    ),
)


def _name(node: ast.AST) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


def _bound_values(tree: ast.AST, contexts: frozenset[str]) -> Iterator[ast.AST]:
    """Expressions bound to one of ``contexts``: keyword arguments, defaults, assignments, comparisons."""
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in contexts:
            yield node.value
        elif isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if node.value is not None and any(_name(t) in contexts for t in targets):
                yield node.value
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_name(side) in contexts for side in sides):
                yield from sides
        elif isinstance(node, ast.arguments):
            params = [*node.posonlyargs, *node.args]
            defaults = list(zip(params[len(params) - len(node.defaults) :], node.defaults, strict=True))
            defaults += [(a, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True) if d is not None]
            yield from (d for a, d in defaults if a.arg in contexts)


def _defined_names(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.lineno, node.name
        elif isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            for target in targets:
                for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if isinstance(element, ast.Name):
                        yield node.lineno, element.id


@functools.cache
def _parse(source: str) -> ast.Module:
    return ast.parse(source)


def spellings(source: str, contract: Contract) -> list[tuple[int, str]]:
    """``(line, what)`` for every place ``source`` spells ``contract`` itself."""
    tree = _parse(source)
    docstrings = docstring_ids(tree)
    found: set[tuple[int, str]] = set()
    for const in string_constants(tree, docstrings):
        if any(part in const.value for part in contract.substrings):
            found.add((const.lineno, const.value))
        if const.value in contract.exact or (contract.pattern and contract.pattern.fullmatch(const.value)):
            found.add((const.lineno, const.value))
    if contract.values and contract.contexts:
        for value in _bound_values(tree, contract.contexts):
            found.update((c.lineno, c.value) for c in string_constants(value) if c.value in contract.values)
    if contract.collection:
        for node in ast.walk(tree):
            elements = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None)
            if not isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict) or not elements:
                continue
            constants = [e for e in elements if isinstance(e, ast.Constant) and not isinstance(e.value, bool)]
            hits = [e for e in constants if str(e.value).lower() in contract.values]  # True/False are no text
            if len(hits) >= contract.collection:
                found.update((e.lineno, e.value) for e in hits)
    found.update((line, name) for line, name in _defined_names(tree) if name in contract.names)
    if contract.fields:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                annotated = {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and _name(s.target)}
                if contract.fields <= annotated:
                    found.add((node.lineno, f"class {node.name}"))
    return sorted(found)


@functools.cache
def _sources(roots: tuple[Path, ...] = SCANNED) -> tuple[tuple[str, str], ...]:
    files = sorted(p for root in roots for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    return tuple((p.relative_to(ROOT).as_posix(), p.read_text()) for p in files)


def places(contract: Contract) -> dict[str, list[tuple[int, str]]]:
    """Every scanned file that spells ``contract``, home included, with its spellings."""
    found = {}
    for path, source in _sources():
        hits = spellings(source, contract)
        if hits:
            found[path] = hits
    return found


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.name)
def test_each_contract_is_spelled_only_in_its_home(contract):
    strays = {
        f"{path}:{line}: {what!r}"
        for path, hits in places(contract).items()
        if path not in contract.home
        for line, what in hits
    }
    assert not strays, f"{contract.name}: import these from {' / '.join(contract.home)}:\n" + "\n".join(sorted(strays))


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.name)
def test_each_home_holds_its_contract(contract):
    """A home that spells nothing means the contract moved and the scan now guards an empty file."""
    found = places(contract)
    assert all(home in found for home in contract.home), (contract.home, sorted(found))


def _contract(name: str) -> Contract:
    return next(c for c in CONTRACTS if c.name == name)


def test_the_scan_finds_model_version_files_but_notdocstring_ids():
    source = '''
"""A version holds metrics.json and evaluation.json."""
def read(folder):
    """Reads metadata.json."""
    if not (folder / "metrics.json").exists():
        raise ValueError(f"{folder} holds no metrics.json")
    return {"Plots": f"{folder}/training_curves.png", "page": "per_class_accuracy.png"}
SERVED = {METRICS: "application/json"}
def candidate_accuracy(evaluation, metrics): ...
ok = read_json(folder / METADATA)
'''
    found = [what for _, what in spellings(source, _contract("model-version files"))]
    assert sorted(found) == sorted(
        ["metrics.json", " holds no metrics.json", "/training_curves.png", "per_class_accuracy.png"]
        + ["SERVED", "candidate_accuracy"]
    )


def test_the_scan_finds_cluster_modes_and_roles_in_every_shape():
    source = """
CLUSTER_MODES = ("existing", "ephemeral")
def f(cluster_role="all", mode=None):
    if mode == "ephemeral":
        return cluster_role in ("all", "training")
    groups = {"training": 1, "inference": 2}
    run(cluster_role="inference")
    return self.cluster_role == "training"
fine = {"identity": "training", "image": "inference", "selector": "all"}
"""
    modes = spellings(source, _contract("cluster modes"))
    roles = [what for _, what in spellings(source, _contract("cluster roles"))]
    assert sorted(what for _, what in modes) == ["CLUSTER_MODES", "ephemeral", "ephemeral", "existing"]
    assert sorted(roles) == sorted(["all", "all", "training", "training", "inference", "inference", "training"])


def test_the_scan_finds_instance_types_uris_stamps_file_names_and_yes_no_sets():
    source = """
DEFAULT = "ml.g4dn.xlarge"
TYPES = ("ml.p3.2xlarge", "ml.m5.large")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_STAMP = "%Y%m%dT%H%M%S"
key = f"{now:%Y%m%dT%H%M%S%fZ}"
count = described[f"{split}-images-idx3-ubyte.gz"]["count"]
def _as_bool(value):
    return value.lower() in {"1", "true", "yes", "on"}
fine = ("ml-training", "s3://bucket", "true", {"mpi_enabled": "true"})
"""
    types = [what for _, what in spellings(source, _contract("SageMaker instance types"))]
    assert sorted(types) == ["ml.g4dn.xlarge", "ml.m5.large", "ml.p3.2xlarge"]
    assert [what for _, what in spellings(source, _contract("data-URI pattern"))] == [
        "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
    ]
    assert sorted(what for _, what in spellings(source, _contract("store timestamp"))) == [
        "%Y%m%dT%H%M%S",
        "%Y%m%dT%H%M%S%fZ",
        "_STAMP",
    ]
    assert [what for _, what in spellings(source, _contract("Fashion-MNIST file names"))] == ["-images-idx3-ubyte.gz"]
    assert sorted(what for _, what in spellings(source, _contract("yes/no parsing"))) == [
        "_as_bool",
        "on",
        "true",
        "yes",
    ]


def test_the_scan_finds_a_second_node_group_record():
    source = """
@dataclass
class GroupInfo:
    name: str
    status: str
    min_size: int
    desired: int
    max_size: int
    instance_type: str | None
@dataclass
class Desired:
    name: str
    min_size: int
    desired_capacity: int
    max_size: int
"""
    assert spellings(source, _contract("node-group state")) == [(3, "class GroupInfo")]


def test_priced_and_offered_sagemaker_types_are_accepted_types():
    from eksml import prices

    accepted = set(instances.TRAINING_INSTANCE_GPUS)
    assert set(prices.SAGEMAKER_TRAINING_HOUR) <= accepted
    assert set(instances.OFFERED_TRAINING_TYPES) <= accepted
    assert instances.DEFAULT_TRAINING_TYPE in instances.OFFERED_TRAINING_TYPES


@pytest.mark.parametrize(
    "text, expected",
    [("true", True), (" Yes", True), ("ON", True), ("1", True), ("false", False), ("no", False), ("off", False)]
    + [("0", False), ("", False), ("None", False), (True, True), (0, False)],
)
def test_parse_bool_reads_every_spelling_the_sources_used(text, expected):
    assert settings.parse_bool(text) is expected


def test_parse_bool_refuses_a_typo_instead_of_reading_false():
    with pytest.raises(ValueError, match="'ture'"):
        settings.parse_bool("ture")
