"""Small, valid slices of the real Fashion-MNIST IDX files, for tests that must run in seconds."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

DROP_SIZES = {"train": 2000, "t10k": 500}


def write_small_drop(source: Path, target: Path, sizes: dict[str, int] = DROP_SIZES, offset: int = 0) -> Path:
    """Items ``offset``..``offset+N`` of each real IDX file, with the header's count rewritten to N."""
    target.mkdir(parents=True, exist_ok=True)
    for split, count in sizes.items():
        for kind, rank in (("images-idx3", 3), ("labels-idx1", 1)):
            name = f"{split}-{kind}-ubyte.gz"
            raw = gzip.decompress((source / name).read_bytes())
            header = 4 + 4 * rank
            magic, *dims = struct.unpack(f">{1 + rank}I", raw[:header])
            item = 1
            for dim in dims[1:]:
                item *= dim
            body = raw[header + offset * item : header + (offset + count) * item]
            header_bytes = struct.pack(f">{1 + rank}I", magic, count, *dims[1:])
            (target / name).write_bytes(gzip.compress(header_bytes + body, mtime=0))
    return target


def write_idx(path: Path, magic: int, dims: list[int], body: bytes) -> None:
    """One gzipped IDX file with the given header, for corrupt-data tests."""
    path.write_bytes(gzip.compress(struct.pack(f">{1 + len(dims)}I", magic, *dims) + body, mtime=0))
