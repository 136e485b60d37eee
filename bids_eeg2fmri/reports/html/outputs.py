"""Finding and reading what a run wrote: the derivative files of one run
(:class:`RunFiles`), the runs of a participant, the model cards, the page's context
(where it is written, what it reads), and tolerant readers of our JSON and TSV files and
of the BIDS URIs in our sidecars. Nothing here draws or renders; a missing or unreadable
file gives ``None`` or ``{}``, never an exception.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

LOGGER = logging.getLogger(__name__)

#: How our TSVs are read: ``n/a`` is missing, labels stay text (``01`` is not 1).
_TSV = {
    "sep": "\t",
    "na_values": ["n/a"],
    "keep_default_na": False,
    "dtype": {c: str for c in ("participant", "run", "method", "split", "region", "channel")},
}


@dataclass(frozen=True)
class RunFiles:
    """The derivative files of one run (they may or may not exist)."""

    name: str
    func: Path
    eeg: Path

    @property
    def synth(self) -> Path:
        return self.func / f"{self.name}_desc-synth_bold.nii.gz"

    @property
    def corr(self) -> Path:
        return self.func / f"{self.name}_desc-corr_statmap.nii.gz"

    @property
    def metrics(self) -> Path:
        return self.func / f"{self.name}_desc-synth_metrics.tsv"

    @property
    def relevance_map(self) -> Path:
        return self.func / f"{self.name}_desc-lrp_relevance.nii.gz"

    @property
    def volumes(self) -> Path:
        return self.eeg / f"{self.name}_desc-volumes_events.tsv"

    @property
    def relevance(self) -> Path:
        return self.eeg / f"{self.name}_desc-lrp_relevance.tsv"

    @property
    def attention(self) -> Path:
        return self.eeg / f"{self.name}_desc-attention_graph.tsv"


def find_runs(output_dir: Path, subject: str) -> list[RunFiles]:
    """The runs of a participant with at least one derivative file, sorted by name."""
    label = str(subject).removeprefix("sub-")
    root = Path(output_dir) / f"sub-{label}"
    found: dict[str, RunFiles] = {}
    for folder in [root, *sorted(root.glob("ses-*"))]:
        for datatype in ("func", "eeg"):
            for path in sorted((folder / datatype).glob(f"sub-{label}_*_desc-*")):
                name = path.name.split("_desc-")[0]
                found.setdefault(name, RunFiles(name, folder / "func", folder / "eeg"))
    return [found[k] for k in sorted(found)]


def _model_cards(output_dir: Path) -> list[dict]:
    """Model cards of the models trained in this output (``models/*.json`` with training)."""
    cards = []
    for path in sorted((Path(output_dir) / "models").glob("*.json")):
        try:
            card = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(card, dict) and isinstance(card.get("training"), dict):
            card.setdefault("name", path.stem)
            cards.append(card)
    return cards


@dataclass
class _Context:
    output_dir: Path
    bids_dir: Path | None
    html_dir: Path
    figures: Path
    cards: list[dict]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_tsv(path: Path):
    """A TSV as a DataFrame (``n/a`` as missing), or None if absent or unreadable."""
    import pandas as pd

    if not Path(path).is_file():
        return None
    try:
        return pd.read_csv(path, **_TSV)
    except (OSError, ValueError) as exc:
        LOGGER.warning("Report: could not read %s: %s", path, exc)
        return None


def _has_values(table, column: str) -> bool:
    if table is None or column not in table:
        return False
    import pandas as pd

    return bool(pd.to_numeric(table[column], errors="coerce").notna().any())


def _uri_path(uri: str) -> str:
    """The path part of a BIDS URI (``bids:raw:sub-01/...`` -> ``sub-01/...``)."""
    return uri.split(":", 2)[2] if uri.startswith("bids:") and uri.count(":") >= 2 else uri


def _resolve(uri: str, context: _Context) -> Path | None:
    """A BIDS URI of our sidecars as a local file, if it exists."""
    if uri.startswith("bids:"):
        _, dataset, relative = (uri.split(":", 2) + ["", ""])[:3]
        root = {"": context.output_dir, "raw": context.bids_dir}.get(dataset)
    else:
        root, relative = context.bids_dir, uri
    if root is None:
        return None
    path = Path(root) / relative
    return path if path.is_file() else None
