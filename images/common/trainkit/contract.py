"""What the Airflow side and the images agree on, spelled once for both.

The images import this file as ``trainkit.contract`` (their Dockerfiles copy ``common/trainkit``
beside each entrypoint; the local profile puts ``images/common`` on ``PYTHONPATH``; SageMaker's
staged source carries ``trainkit``). The Airflow side loads this very file through
``eksml.contract``. So the files of a model version, the data set's files and their IDX
decoding, and the training defaults have one home, and a change here reaches both sides.

Standard library only: the images' environments and Airflow's share nothing else.
"""

from __future__ import annotations

import gzip
import struct
import zlib

# --- the files of a model version -----------------------------------------------------------
#: Training's figures; written last by the trainer, so a version folder holding it is complete.
METRICS = "metrics.json"
#: Loss and accuracy per epoch, for the training curves.
HISTORY = "history.json"
#: The evaluation's report (candidate vs champion); written last by the evaluation.
EVALUATION = "evaluation.json"
#: What the registry records about a version; written last at registration.
METADATA = "metadata.json"
TRAINING_CURVES = "training_curves.png"
CONFUSION_MATRIX = "confusion_matrix.png"
PER_CLASS_ACCURACY = "per_class_accuracy.png"
PLOTS = (TRAINING_CURVES, CONFUSION_MATRIX, PER_CLASS_ACCURACY)

# --- the data set ---------------------------------------------------------------------------
#: The four Fashion-MNIST files: images and labels of the training and test splits.
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
#: file name -> IDX rank (images: 3, labels: 1)
IDX_RANKS = {TRAIN_IMAGES: 3, TRAIN_LABELS: 1, TEST_IMAGES: 3, TEST_LABELS: 1}
#: IDX magic number per rank of unsigned-byte files.
IDX_MAGIC = {1: 2049, 3: 2051}
#: Checksums of a data version's four files, written with it.
MANIFEST = "manifest.json"
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10

# --- training defaults (the trigger form's and the entrypoints') ----------------------------
DEFAULT_EPOCHS = 5
MAX_EPOCHS = 100
DEFAULT_BATCH_SIZE = 128
DEFAULT_LEARNING_RATE = 0.001


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off", "none"})


def parse_bool(value: object) -> bool:
    """A yes/no from text, as environment variables, Variables, templated params and SageMaker
    hyperparameters carry it.

    ``1/true/yes/on`` and ``0/false/no/off`` (any case; empty and ``None`` read as false);
    a non-text value by its truth. Anything else raises ValueError naming it, so a typo never
    silently reads as false.
    """
    if not isinstance(value, str):
        return bool(value)
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected a yes/no value (true/false, yes/no, on/off, 1/0), got {value!r}")


class IdxError(ValueError):
    """Bytes that are not a complete gzipped unsigned-byte IDX file; the message says why."""


def decode_idx(blob: bytes, rank: int) -> tuple[list[int], memoryview]:
    """Decompress one gzipped unsigned-byte IDX file and check it fully (gzip CRC, magic, size).

    Returns its dimensions and a view of its data bytes (no copy of a 47 MB image file).
    """
    try:
        payload = gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxError(f"not a valid gzip file ({exc})") from exc
    header = 4 + 4 * rank
    if len(payload) < header:
        raise IdxError("too short to be an IDX file")
    magic, *dims = struct.unpack(f">{1 + rank}I", payload[:header])
    if magic != IDX_MAGIC[rank]:
        raise IdxError(f"IDX magic {magic}, expected {IDX_MAGIC[rank]}")
    size = 1
    for dim in dims:
        size *= dim
    if len(payload) - header != size:
        raise IdxError(f"{len(payload) - header} data bytes, header says {size}")
    return dims, memoryview(payload)[header:]
