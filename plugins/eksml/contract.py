"""The contract between the Airflow side and the images, loaded from its one home.

``images/common/trainkit/contract.py`` names the files of a model version and of the data set,
decodes IDX files and holds the training defaults; the images import it as ``trainkit.contract``.
Airflow does not have ``images/common`` on its path (and must not import the rest of
``trainkit``, which needs numpy and the images' environments), so this module loads that one
stdlib-only file by its path in the project tree, which every deployment carries beside
``plugins/`` (the Airflow image copies ``images/`` to ``/opt/airflow/images``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

#: plugins/eksml/contract.py -> <project>/images/common/trainkit/contract.py
SOURCE = Path(__file__).resolve().parents[2] / "images" / "common" / "trainkit" / "contract.py"
_NAME = "eksml._image_contract"


def _load():
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    spec = importlib.util.spec_from_file_location(_NAME, SOURCE)
    if spec is None or spec.loader is None or not SOURCE.is_file():
        raise ImportError(f"the images' contract is missing: {SOURCE} (the project's images/ folder must be present)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    spec.loader.exec_module(module)
    return module


_contract = _load()

METRICS: str = _contract.METRICS
HISTORY: str = _contract.HISTORY
EVALUATION: str = _contract.EVALUATION
METADATA: str = _contract.METADATA
TRAINING_CURVES: str = _contract.TRAINING_CURVES
CONFUSION_MATRIX: str = _contract.CONFUSION_MATRIX
PER_CLASS_ACCURACY: str = _contract.PER_CLASS_ACCURACY
PLOTS: tuple[str, ...] = _contract.PLOTS
TRAIN_IMAGES: str = _contract.TRAIN_IMAGES
TRAIN_LABELS: str = _contract.TRAIN_LABELS
TEST_IMAGES: str = _contract.TEST_IMAGES
TEST_LABELS: str = _contract.TEST_LABELS
IDX_RANKS: dict[str, int] = _contract.IDX_RANKS
IDX_MAGIC: dict[int, int] = _contract.IDX_MAGIC
MANIFEST: str = _contract.MANIFEST
IMAGE_SHAPE: tuple[int, int] = _contract.IMAGE_SHAPE
NUM_CLASSES: int = _contract.NUM_CLASSES
DEFAULT_EPOCHS: int = _contract.DEFAULT_EPOCHS
MAX_EPOCHS: int = _contract.MAX_EPOCHS
DEFAULT_BATCH_SIZE: int = _contract.DEFAULT_BATCH_SIZE
DEFAULT_LEARNING_RATE: float = _contract.DEFAULT_LEARNING_RATE
IdxError: type[ValueError] = _contract.IdxError
decode_idx = _contract.decode_idx
parse_bool = _contract.parse_bool
