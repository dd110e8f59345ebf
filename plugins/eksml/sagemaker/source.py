"""The script-mode source folder: the image's entrypoint code plus ``trainkit``, as the image has it.

Our Dockerfiles copy ``images/<image>/`` and ``images/common/trainkit`` side by side; the
staged folder has the same layout, so ``import trainkit`` and the entrypoint's sibling modules
resolve the same way in the Deep Learning Container. Its ``requirements.txt`` holds only what
the DLC lacks (the image's own requirements would reinstall the framework).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", "Dockerfile*", "requirements*", "*.sh", ".*")


def stage_source_dir(image: str, images_dir: str | Path, dest: str | Path, requirements: Iterable[str] = ()) -> Path:
    """Copy ``images/<image>/`` code and ``images/common/trainkit`` into ``dest``; return ``dest``."""
    images = Path(images_dir)
    src = images / image
    trainkit = images / "common" / "trainkit"
    if not src.is_dir():
        raise FileNotFoundError(f"no image folder {src}")
    if not (trainkit / "__init__.py").is_file():
        raise FileNotFoundError(f"no trainkit package at {trainkit}")
    dest = Path(dest)
    shutil.copytree(src, dest, ignore=_SKIP, dirs_exist_ok=True)
    shutil.copytree(trainkit, dest / "trainkit", ignore=_SKIP, dirs_exist_ok=True)
    lines = [line.strip() for line in requirements if line.strip()]
    if lines:
        (dest / "requirements.txt").write_text("\n".join(lines) + "\n")
    return dest
