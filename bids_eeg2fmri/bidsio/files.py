"""Atomic file writing: a crash never leaves a half-written file under its final name."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: Path, writer: Callable[[Path], None], *, suffix: str = ".tmp") -> Path:
    """Call ``writer(tmp_path)`` on a temporary file next to ``path``, then rename it.

    The temporary file lives in the same folder (same file system), so the final
    ``os.replace`` is atomic: readers see the old file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_tsv_atomic(path: Path, header: list[str], rows) -> Path:
    """Write a BIDS TSV (header row, tab-separated rows of strings, UTF-8) atomically."""
    lines = ["\t".join(header), *("\t".join(row) for row in rows)]
    return write_text_atomic(path, "\n".join(lines) + "\n")


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write JSON (indented, UTF-8, newline-terminated) atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (hex), read in blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def nifti_image(data, affine, zooms):
    """A NIfTI-1 image with its units (mm, s), zooms (incl. the TR of 4-D data) and
    q/s-forms set to ``affine`` (scanner coordinates), as BIDS validators expect."""
    import nibabel as nib
    import numpy as np

    affine = np.asarray(affine, dtype=float)
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms(tuple(float(z) for z in zooms))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img


def write_nifti_atomic(path: Path, data, affine, meta: dict, *, step: float = 1.0) -> Path:
    """A float32 NIfTI (``.nii.gz``) on ``affine``'s grid and its JSON sidecar, both
    atomically; ``step`` is the 4th-axis zoom of 4-D data (the TR for BOLD)."""
    import numpy as np
    from nibabel.affines import voxel_sizes

    data = np.asarray(data, np.float32)
    zooms = tuple(voxel_sizes(np.asarray(affine, float)))
    img = nifti_image(data, affine, zooms + ((step,) if data.ndim == 4 else ()))
    write_json_atomic(path.with_name(path.name.replace(".nii.gz", ".json")), meta)
    return write_atomic(path, img.to_filename, suffix=".tmp.nii.gz")
