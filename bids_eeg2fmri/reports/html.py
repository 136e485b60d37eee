"""Participant and group HTML reports, built from the derivatives on disk.

Like fMRIPrep's reportlets, the reports read only what the run wrote in OUTPUT_DIR (and
the observed BOLD of the input dataset): they can be rebuilt at any time, and show what
was written, not what was meant to be. Figures go to ``OUTPUT_DIR/sub-<label>/figures/``
(participant) and ``OUTPUT_DIR/figures/`` (group) and are linked by relative paths, so a
moved OUTPUT_DIR keeps working reports. A missing piece (no BOLD, no relevance file, no
model card...) gives a short note in its place, never an exception; a figure that fails
to draw is logged and replaced by a note.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from bids_eeg2fmri import __version__
from bids_eeg2fmri.bidsio.files import write_text_atomic

LOGGER = logging.getLogger(__name__)

#: How our TSVs are read: ``n/a`` is missing, labels stay text (``01`` is not 1).
_TSV = {
    "sep": "\t",
    "na_values": ["n/a"],
    "keep_default_na": False,
    "dtype": {c: str for c in ("participant", "run", "method", "split", "region", "channel")},
}

#: Metrics drawn for the model and the baselines, in this order.
FIGURE_METRICS = ("r_mask_mean", "r_coupled_mean", "rmse_mask", "ssim_original", "ssim_mask")

#: Columns of the metrics tables: (column, heading).
TABLE_METRICS = (
    ("r_mask_mean", "r mean"),
    ("r_mask_median", "r median"),
    ("r_mask_p90", "r p90"),
    ("r_coupled_mean", "r coupled"),
    ("noise_ceiling_mean", "noise ceiling"),
    ("fraction_of_ceiling", "fraction of ceiling"),
    ("rmse_mask", "RMSE mask"),
    ("rmse_volume", "RMSE volume"),
    ("ssim_original", "SSIM original"),
    ("ssim_mask", "SSIM mask"),
    ("psnr_mask", "PSNR mask (dB)"),
)

METHODS_TEXT = (
    "The synthesizer is a neural network trained to predict each BOLD volume from the EEG "
    "recorded before its onset: the EEG is cut into windows ending at the volume onset and "
    "at earlier lags (multiples of the TR, covering the haemodynamic delay), turned into "
    "time-frequency features per channel, and mapped to a whole volume; the participants "
    "of the 'train' split fit it, those of the 'validation' split stop its training, and "
    "the 'holdout' participants are never seen, so that their scores measure generalisation "
    "to new people. It is compared with two baselines: 'mean-volume', the mean training "
    "volume repeated at every time point (constant in time, so its temporal correlation is "
    "undefined), and 'ridge', a per-voxel ridge regression on haemodynamically convolved "
    "EEG band power fitted on the same training participants. Synthesized and observed BOLD "
    "are compared over time by the voxelwise Pearson correlation r (1: the same time course "
    "up to scale and offset; 0: unrelated), summarised over the brain mask, and volume by "
    "volume by the root mean square error (RMSE, in the units of the BOLD), the structural "
    "similarity index (SSIM: agreement of local mean, contrast and structure; 1 for "
    "identical volumes) and the peak signal-to-noise ratio (PSNR). On simulated data the "
    "noise ceiling, the r of the noiseless with the observed BOLD in the voxels the "
    "simulation couples to EEG, is the best any method can reach. Layer-wise relevance "
    "propagation (LRP) attributes the synthesized signal of a region back to the EEG inputs "
    "(channel, frequency and lag): positive relevance pushed the region's signal the way "
    "it moved away from the prediction for the run's average EEG, negative held it back."
)

_LOG_RECORD = re.compile(
    r"^(?P<time>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[,.]\d+)?)\s*"
    r"(?:\|\s*(?P<logger>[^|]*?)\s*\|\s*)?"
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)\b\s*\|?\s?(?P<message>.*)$"
)


# --------------------------------------------------------------------------------------
# Public API


def write_participant_report(output_dir: Path, subject: str, *, bids_dir: Path) -> Path:
    """Write ``OUTPUT_DIR/sub-<label>.html`` and its figures.

    Parameters
    ----------
    output_dir : Path
        The derivative dataset (the App's OUTPUT_DIR).
    subject : str
        Participant label, with or without ``sub-``.
    bids_dir : Path
        The input dataset (read only), for the observed BOLD.

    Returns
    -------
    Path
        The HTML file.
    """
    output_dir, bids_dir = Path(output_dir), Path(bids_dir)
    label = str(subject).removeprefix("sub-")
    page = output_dir / f"sub-{label}.html"
    context = _Context(
        output_dir=output_dir,
        bids_dir=bids_dir,
        html_dir=output_dir,
        figures=output_dir / f"sub-{label}" / "figures",
        cards=_model_cards(output_dir),
    )
    runs = find_runs(output_dir, label)
    LOGGER.info("Writing the report of sub-%s (%d run(s))", label, len(runs))

    summary_rows, run_sections, shas = [], [], set()
    for run in runs:
        report = _RunReport(run, context)
        summary_rows.append(report.summary_row())
        run_sections.append(report.section())
        if report.meta.get("ModelDigest"):
            shas.add(report.meta["ModelDigest"])

    summary: list[dict] = [
        _facts(
            [
                ("Participant", f"sub-{label}"),
                ("Runs", str(len(runs))),
                ("Input dataset", str(bids_dir)),
                ("Output dataset", str(output_dir)),
            ]
        )
    ]
    if runs:
        summary.append(
            _table(
                ["Run", "EEG", "BOLD", "Volumes", "Without EEG", "Split (volumes)", "Model"],
                summary_rows,
                caption="How each EEG recording was paired with a BOLD run. 'EEG only': no "
                "BOLD was paired, so the synthesized BOLD cannot be compared with an observed "
                "one. 'Without EEG': volumes whose EEG window was incomplete (not predicted "
                "from EEG). The split says how the model used the volumes: train and "
                "validation volumes were seen in training, holdout volumes were not; "
                "'applied' means a model trained on other data.",
                css="runs",
            )
        )
    else:
        summary.append(
            _note(f"No outputs were found for sub-{label} in {output_dir}: nothing to report.")
        )

    used = [c for c in context.cards if not shas or c.get("digest") in shas]
    sections = [
        _section("summary", "Summary", summary),
        *run_sections,
        _section(
            "training",
            "Training",
            _guarded(
                lambda: _training_items(used, context, label=label, stem=f"sub-{label}"),
                "the training summary",
            ),
        ),
        _section("warnings", "Warnings", _warning_items(output_dir, label)),
        _section("about", "About", _about_items(context)),
    ]
    if not used:
        sections = [s for s in sections if s["id"] != "training"]
    return _render(
        page,
        title=f"sub-{label}",
        subtitle="bids-eeg2fmri participant report: fMRI synthesized from EEG",
        sections=sections,
    )


def write_group_report(output_dir: Path) -> Path:
    """Write ``OUTPUT_DIR/group.html`` and its figures (``OUTPUT_DIR/figures/``).

    Reads ``group_desc-synth_metrics.tsv`` (or, without it, the participants' metrics
    tables), every ``*_desc-lrp_relevance.tsv`` and the model cards.

    Parameters
    ----------
    output_dir : Path
        The derivative dataset (the App's OUTPUT_DIR).

    Returns
    -------
    Path
        The HTML file.
    """
    import pandas as pd

    from bids_eeg2fmri.reports import figures as fig

    output_dir = Path(output_dir)
    context = _Context(
        output_dir=output_dir,
        bids_dir=None,
        html_dir=output_dir,
        figures=output_dir / "figures",
        cards=_model_cards(output_dir),
    )
    table, origin = _group_metrics(output_dir)
    participants = sorted(
        {p.name.removeprefix("sub-") for p in output_dir.glob("sub-*") if p.is_dir()}
        | (set(table["participant"].astype(str)) if table is not None else set())
    )

    rows = []
    for label in participants:
        html = output_dir / f"sub-{label}.html"
        n_runs = len(find_runs(output_dir, label))
        link = {"text": f"sub-{label}", "href": _href(html, output_dir)}
        rows.append([link if html.is_file() else f"sub-{label}", str(n_runs)])
    summary = [
        _facts(
            [
                ("Participants", str(len(participants))),
                ("Output dataset", str(output_dir)),
                ("Metrics from", origin or "none found"),
            ]
        ),
        _table(["Participant", "Runs"], rows, caption="Each participant's report, where written.")
        if rows
        else _note("No participant outputs were found."),
    ]

    metrics_items: list[dict] = []
    if table is None:
        metrics_items.append(
            _note("No metrics table was found: no run had an observed BOLD to compare with.")
        )
    else:
        table["participant"] = table["participant"].astype(str).str.removeprefix("sub-")
        shown = [m for m in FIGURE_METRICS if _has_values(table, m)]
        metrics_items.append(
            _figure_item(
                "Metrics per method across participants",
                context.figures / "group_desc-synth_metrics.svg",
                context,
                "One point per participant (the mean over their runs) and method, grey lines "
                "joining the same participant, the black diamond the mean +/- sd across "
                "participants. Better synthesis means higher r and SSIM and lower RMSE; the "
                "model should beat both baselines for the same participants, most clearly on "
                "r, which the mean-volume baseline cannot score.",
                lambda path: fig.plot_group_metrics(table, path=path, metrics=shown),
            )
        )
        metrics_items.extend(_guarded(lambda: [_group_summary_table(table)], "summary table"))

    relevance_items = _guarded(
        lambda: _group_relevance_items(output_dir, context, pd), "mean relevance"
    )

    sections = [
        _section("summary", "Summary", summary),
        _section("metrics", "Synthesis quality", metrics_items),
        _section("relevance", "EEG relevance", relevance_items),
        _section(
            "training",
            "Training",
            _guarded(
                lambda: _training_items(context.cards, context, stem="group"),
                "the training summary",
            ),
        ),
        _section("warnings", "Warnings", _warning_items(output_dir, None)),
        _section("about", "About", _about_items(context)),
    ]
    if not context.cards:
        sections = [s for s in sections if s["id"] != "training"]
    return _render(
        output_dir / "group.html",
        title="Group report",
        subtitle="bids-eeg2fmri group report: fMRI synthesized from EEG",
        sections=sections,
    )


# --------------------------------------------------------------------------------------
# Finding the outputs


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


# --------------------------------------------------------------------------------------
# One run


@dataclass
class _Context:
    output_dir: Path
    bids_dir: Path | None
    html_dir: Path
    figures: Path
    cards: list[dict]


class _RunReport:
    """Reads the files of one run and turns them into a summary row and a section."""

    def __init__(self, run: RunFiles, context: _Context):
        self.run, self.context = run, context
        self.meta = _read_json(run.synth.with_name(run.synth.name.replace(".nii.gz", ".json")))
        self.sources = [str(s) for s in self.meta.get("Sources", [])]
        self.volumes = _read_tsv(run.volumes)
        self.metrics = _read_tsv(run.metrics)
        self.eeg_uri = next((s for s in self.sources if "/eeg/" in s or "_eeg." in s), None)
        if self.eeg_uri is None:
            sidecar = _read_json(run.volumes.with_suffix(".json"))
            self.eeg_uri = next((str(s) for s in sidecar.get("Sources", [])), None)
        self.bold_uri = next((s for s in self.sources if re.search(r"_bold\.nii(\.gz)?$", s)), None)
        self.bold_path = _resolve(self.bold_uri, context) if self.bold_uri else None
        without = self.meta.get("VolumesWithoutEEG", [])
        self.without_eeg = [int(v) for v in without if isinstance(v, int | float)]
        self._loaded = None
        self.card = next(
            (c for c in context.cards if c.get("digest") == self.meta.get("ModelDigest")), None
        )

    # -- summary --------------------------------------------------------------------

    def n_volumes(self) -> int | None:
        if self.run.synth.is_file():
            try:
                import nibabel as nib

                shape = nib.load(self.run.synth).shape
                return int(shape[3]) if len(shape) > 3 else 1
            except Exception:  # a broken file is reported by its own figure
                pass
        return len(self.volumes) if self.volumes is not None else None

    def splits(self) -> str:
        if self.metrics is not None and "split" in self.metrics:
            model = self.metrics[self.metrics["method"] == "model"]
            counts = model["split"].astype(str).value_counts()
            return ", ".join(f"{k} {v}" for k, v in counts.items()) or "n/a"
        return "applied" if self.bold_uri is None else "n/a"

    def model_text(self) -> str:
        if self.card is not None:
            return f"{self.card.get('name', '?')} ({self.card.get('preset', 'custom')})"
        match = re.search(r"by the model (.+?)\.?$", str(self.meta.get("Description", "")))
        return match.group(1) if match else "n/a"

    def summary_row(self) -> list:
        n = self.n_volumes()
        return [
            {"text": self.run.name, "href": f"#{self.run.name}"},
            _uri_path(self.eeg_uri) if self.eeg_uri else "n/a",
            _uri_path(self.bold_uri) if self.bold_uri else "EEG only",
            "n/a" if n is None else str(n),
            str(len(self.without_eeg)),
            self.splits(),
            self.model_text(),
        ]

    # -- section --------------------------------------------------------------------

    def section(self) -> dict:
        items: list[dict] = []
        if self.bold_uri is None:
            items.append(
                _note(
                    "EEG-only run: no BOLD was paired with this EEG, so the synthesized BOLD "
                    "is shown alone, without a correlation map or metrics."
                )
            )
        for step in (
            self._onsets,
            self._mr_artifacts,
            self._slices,
            self._correlation,
            self._metrics,
            self._relevance,
            self._attention,
        ):
            items.extend(_guarded(step, f"{self.run.name}: {step.__name__.strip('_')}"))
        return _section(self.run.name, self.run.name, items, level="run")

    def _mr_artifacts(self) -> list[dict]:
        from bids_eeg2fmri.reports.mr_section import mr_items

        return mr_items(
            eeg_dir=self.run.eeg,
            run_name=self.run.name,
            figures=self.context.figures,
            html_dir=self.context.html_dir,
        )

    def _figure(self, what: str, kind: str, ext: str = "svg") -> Path:
        return self.context.figures / f"{self.run.name}_desc-{what}_{kind}.{ext}"

    def _tr(self) -> float | None:
        tr = self.meta.get("RepetitionTime")
        if tr is None and self.volumes is not None and "duration" in self.volumes:
            tr = float(np.nanmedian(self.volumes["duration"].astype(float)))
        return float(tr) if tr else None

    def _onsets(self) -> list[dict]:
        from bids_eeg2fmri.reports import figures as fig

        title = "Volume onsets on the EEG clock"
        if self.volumes is None or "onset" not in self.volumes or self.volumes.empty:
            return [_note(f"{title}: no {self.run.volumes.name}; not shown.")]
        table = self.volumes
        how_column = next((c for c in ("source", "marker") if c in table), None)
        tr = self._tr() or float(np.nanmedian(np.diff(table["onset"].astype(float))))
        how = table[how_column].astype(str).to_numpy() if how_column else None
        repaired = int(np.sum(how == "repaired")) if how is not None else 0
        return [
            _figure_item(
                title,
                self._figure("onsets", "events"),
                self.context,
                "Top: how far each volume onset (found on the EEG clock) lies from the "
                "straight line fitted through all onsets, in ms; a flat band means a steady "
                "TR and well-detected markers, a slope change or a jump means a missed or "
                "spurious marker. Bottom: interval to the previous onset minus the nominal TR. "
                + (
                    f"{repaired} onset(s) were repaired (missing markers put back on the TR "
                    "grid, drawn as crosses)."
                    if repaired
                    else "No onset needed repair."
                ),
                lambda path: fig.plot_volume_onsets(
                    table["onset"].astype(float).to_numpy(),
                    tr=tr,
                    volumes=table["volume"].astype(float).to_numpy() if "volume" in table else None,
                    how=how,
                    path=path,
                ),
            )
        ]

    def _bold(self):
        """(synthesized data, affine, observed data or None, offset, note)."""
        import nibabel as nib

        synth_img = nib.load(self.run.synth)
        synth = np.asarray(synth_img.dataobj, dtype=np.float32)
        if synth.ndim == 3:
            synth = synth[..., None]
        observed, offset, note = None, 0, None
        if self.bold_path is None:
            if self.bold_uri is not None:
                note = (
                    f"The observed BOLD ({self.bold_uri}) was not found under the input "
                    "dataset; only the synthesized BOLD is shown."
                )
        else:
            data = np.asarray(nib.load(self.bold_path).dataobj, dtype=np.float32)
            if data.ndim == 3:
                data = data[..., None]
            offset = data.shape[-1] - synth.shape[-1]
            if data.shape[:3] != synth.shape[:3] or offset < 0:
                note = (
                    f"The observed BOLD {self.bold_path.name} ({data.shape}) does not match "
                    f"the synthesized one ({synth.shape}); not compared."
                )
            else:
                observed = data[..., offset:]
        return synth, synth_img.affine, observed, offset, note

    def _shown_volume(self, n_volumes: int) -> tuple[int, str]:
        """A representative volume: the median of the held-out volumes, else of those
        with EEG."""
        candidates, what = np.arange(n_volumes), "with EEG"
        if self.metrics is not None and {"split", "volume"} <= set(self.metrics.columns):
            model = self.metrics[self.metrics["method"] == "model"]
            held = model.loc[model["split"].astype(str) == "holdout", "volume"].astype(int)
            if len(held):
                candidates, what = np.sort(held.to_numpy()), "held out"
        valid = candidates[~np.isin(candidates, self.without_eeg)]
        candidates = valid if valid.size else candidates
        volume = int(candidates[(candidates.size - 1) // 2])
        return min(max(volume, 0), n_volumes - 1), what

    def _slices(self) -> list[dict]:
        from bids_eeg2fmri.reports import figures as fig

        title = "Synthesized BOLD" if self.bold_uri is None else "Synthesized and observed BOLD"
        if not self.run.synth.is_file():
            self._loaded = None
            return [_note(f"{title}: no {self.run.synth.name}; not shown.")]
        try:
            self._loaded = self._bold()
        except Exception as exc:
            self._loaded = None
            LOGGER.warning("Report: could not read the BOLD of %s: %s", self.run.name, exc)
            return [_note(f"{title}: the images could not be read ({exc}).")]
        synth, affine, observed, offset, note = self._loaded
        volume, what = self._shown_volume(synth.shape[-1])
        items = [_note(note)] if note else []
        skipped = (
            f" The first {offset} volume(s) of the observed run (dummy scans) have no "
            "synthesized counterpart and are skipped."
            if offset
            else ""
        )
        items.append(
            _figure_item(
                title,
                self._figure("synth", "bold", "png"),
                self.context,
                f"Axial slices of volume {volume} (the middle one of the volumes {what}), "
                + (
                    "observed (top) and synthesized (bottom), drawn with the same grey scale "
                    "(the observed volume's 1st to 99.5th percentile) so that intensities "
                    "compare directly." + skipped
                    if observed is not None
                    else "synthesized from EEG."
                ),
                lambda path: fig.plot_synthesized_vs_observed(
                    synth[..., volume],
                    None if observed is None else observed[..., volume],
                    affine=affine,
                    path=path,
                ),
            )
        )
        return items

    def _correlation(self) -> list[dict]:
        import nibabel as nib

        from bids_eeg2fmri.reports import figures as fig

        title = "Voxelwise correlation with the observed BOLD"
        if self.bold_uri is None and not self.run.corr.is_file():
            return []  # EEG only: said once, at the top of the run
        if not self.run.corr.is_file():
            return [_note(f"{title}: no {self.run.corr.name}; not shown.")]
        loaded = getattr(self, "_loaded", None)
        background = None
        if loaded is not None and loaded[2] is not None:
            background = loaded[2].mean(axis=-1)

        def draw(path: Path) -> Path:
            img = nib.load(self.run.corr)
            r_map = np.asarray(img.dataobj, dtype=np.float32)
            bg = background if background is not None and background.shape == r_map.shape else None
            return fig.plot_correlation_map(r_map, affine=img.affine, background=bg, path=path)

        return [
            _figure_item(
                title,
                self._figure("corr", "statmap", "png"),
                self.context,
                "Pearson r between the synthesized and the observed time course of every "
                "voxel, over the run's evaluated volumes, on the mean observed BOLD. Red: the "
                "synthesized signal rises and falls with the observed one; blue: opposite "
                "course. The colour scale is symmetric around 0; voxels with undefined r are "
                "not coloured. Real BOLD is noisy: even a perfect model of the EEG-related "
                "signal reaches only the noise ceiling.",
                draw,
            )
        ]

    def _metrics(self) -> list[dict]:
        from bids_eeg2fmri.reports import figures as fig

        title = "Model against the baselines"
        table = self.metrics
        if self.bold_uri is None and table is None:
            return []  # EEG only: said once, at the top of the run
        if table is None or "method" not in table:
            return [_note(f"{title}: no {self.run.metrics.name}; not shown.")]
        shown = [m for m in FIGURE_METRICS if _has_values(table, m)]
        rows, classes, basis = _run_metrics_rows(table)
        return [
            _table(
                ["Method", "Volumes", *(h for c, h in TABLE_METRICS if _has_values(table, c))],
                rows,
                title=title,
                classes=classes,
                caption=f"r: run-level voxelwise correlation summaries over the brain mask "
                f"(n/a for the mean-volume baseline, constant in time); RMSE, SSIM and PSNR: "
                f"means over {basis}. 'Volumes' counts them.",
            ),
            _figure_item(
                "Metrics per method",
                self._figure("synth", "metrics"),
                self.context,
                "Each panel compares the model with the baselines on one metric. Bars: "
                "run-level values (r); boxes: per-volume values (median, quartiles), with one "
                "point per volume; grey points are volumes the model was trained on, whose "
                "scores are optimistic. Higher is better for r and SSIM, lower for RMSE.",
                lambda path: fig.plot_method_metrics(table, path=path, metrics=shown),
            ),
        ]

    def _relevance(self) -> list[dict]:
        from bids_eeg2fmri.reports import figures as fig

        title = "What the EEG contributes (LRP relevance)"
        table = _read_tsv(self.run.relevance)
        needed = {"region", "channel", "frequency", "lag", "relevance", "absolute_relevance"}
        if table is None or not needed <= set(table.columns):
            return [
                _note(
                    f"{title}: no {self.run.relevance.name}, or one written by a version "
                    "whose relevance column had another meaning (no absolute_relevance "
                    "column); not shown."
                )
            ]
        channels = list(dict.fromkeys(table["channel"].astype(str)))
        _, dropped = fig.known_channels(channels)
        bands = fig.band_relevance(table)
        band_text = ", ".join(
            f"{n} {lo:g}-{hi:g} Hz" if np.isfinite(hi) else f"{n} >= {lo:g} Hz"
            for n, lo, hi in fig.BANDS
        )
        volume_map = (
            f" Voxel maps of the relevance per band are in {self.run.relevance_map.name}."
            if self.run.relevance_map.is_file()
            else ""
        )
        return [
            _figure_item(
                title,
                self._figure("lrp", "relevance", "png"),
                self.context,
                f"Scalp maps of the relevance of each channel: summed over lags, averaged over "
                f"the frequency bins of each band ({band_text}). Relevance here is the LRP "
                "relevance for the synthesized signal's deviation from the prediction for "
                "the run's average EEG spectrum, signed by the way that signal moved and "
                "averaged over the run's explained volumes: red, the input drove the signal "
                "where it went; blue, it held it back. Rows: the explained signal ('volume': the "
                "whole synthesized volume, then regions); each row has its own colour scale."
                + (
                    f" {len(dropped)} channel(s) without a template position are not drawn."
                    if dropped
                    else ""
                )
                + volume_map,
                lambda path: fig.plot_relevance_topomaps(bands, path=path),
            ),
            _figure_item(
                "Relevance by band and lag",
                self._figure("lrplag", "relevance"),
                self.context,
                "Relevance summed over channels, by frequency band and by how long before the "
                "volume onset the EEG window ends (the lag). A haemodynamic coupling puts the "
                "relevance a few seconds before the onset, not at lag 0.",
                lambda path: fig.plot_relevance_lags(table, path=path),
            ),
        ]

    def _attention(self) -> list[dict]:
        from bids_eeg2fmri.reports import figures as fig

        title = "Attention between channels"
        table = _read_tsv(self.run.attention)
        if table is None or "channel" not in table:
            return [
                _note(
                    f"{title}: no {self.run.attention.name} (a model without an "
                    "attention graph); not shown."
                )
            ]
        channels = table["channel"].astype(str).tolist()
        missing = [c for c in channels if c not in table.columns]
        if missing:
            return [
                _note(
                    f"{title}: {self.run.attention.name} is not square "
                    f"(no column for {', '.join(missing[:5])}); not shown."
                )
            ]
        return [
            _figure_item(
                title,
                self._figure("attention", "graph"),
                self.context,
                "Left: the strongest 1 % of the channel-to-channel attention weights (at "
                "least 3), drawn as arrows from a channel to the channel it attends to, "
                "thicker and darker for larger weights. Right: the whole matrix, mean over "
                "the run's volumes; row i holds how channel i weighs every channel j "
                "(rows sum to 1, so a uniform row is 1 / number of channels).",
                lambda path: fig.plot_attention_graph(
                    table[channels].to_numpy(dtype=float), channels=channels, path=path
                ),
            )
        ]


def _run_metrics_rows(table) -> tuple[list[list[str]], list[str], str]:
    """Rows of a run's metrics table (model first), their CSS classes, and the volumes
    the per-volume means are taken over."""
    from bids_eeg2fmri.reports.figures.common import RUN_LEVEL_METRICS, _truthy, order_methods

    trained = _truthy(table["in_training"]) if "in_training" in table else np.zeros(len(table))
    unseen = ~np.asarray(trained, bool)
    mixed = unseen.any() and not unseen.all()
    basis = "the volumes never seen in training" if mixed else "all volumes"
    if not unseen.any():
        basis += " (all were used in training: the scores are optimistic)"
    rows, classes = [], []
    for method in order_methods(table["method"]):
        chosen = np.asarray(table["method"] == method)
        if mixed:
            chosen &= unseen
        sub = table[chosen] if chosen.any() else table[np.asarray(table["method"] == method)]
        row = [method, str(len(sub))]
        for column, _ in TABLE_METRICS:
            if not _has_values(table, column):
                continue
            values = np.asarray(sub[column], dtype=float)
            value = values[0] if column in RUN_LEVEL_METRICS else _nanmean(values)
            row.append(_fmt(value))
        rows.append(row)
        classes.append("model" if method == "model" else "")
    return rows, classes, basis


# --------------------------------------------------------------------------------------
# Training, warnings, about


def _training_items(cards: list[dict], context: _Context, *, stem: str, label=None) -> list:
    from bids_eeg2fmri.reports import figures as fig

    items: list[dict] = []
    for i, card in enumerate(cards, start=1):
        training = card.get("training", {})
        name = str(card.get("name", f"model {i}"))
        facts = [("Model", name), ("Preset", str(card.get("preset", "n/a")))]
        for key, heading in (
            ("epochs", "Epochs (maximum)"),
            ("batch_size", "Batch size"),
            ("learning_rate", "Learning rate"),
            ("seed", "Seed"),
            ("seconds", "Training time (s)"),
        ):
            if key in training:
                facts.append((heading, str(training[key])))
        if isinstance(card.get("trainable_parameters"), int):
            facts.append(("Trainable parameters", f"{card['trainable_parameters']:,}"))
        sub: list[dict] = [_facts(facts)]
        participants = training.get("participants") or {}
        if isinstance(participants, dict) and participants:
            rows = []
            for split in ("train", "validation", "holdout"):
                labels = [str(p).removeprefix("sub-") for p in participants.get(split, [])]
                shown = ", ".join(f"sub-{p}" for p in labels) or "none"
                rows.append([split, str(len(labels)), shown])
            where = next(
                (
                    s
                    for s in ("train", "validation", "holdout")
                    if label is not None
                    and label in [str(p).removeprefix("sub-") for p in participants.get(s, [])]
                ),
                None,
            )
            caption = "Participants are split as wholes, so that no person is in two splits. "
            if label is not None:
                caption += (
                    f"sub-{label} was in the {where} split."
                    if where
                    else f"sub-{label} was not used to train this model."
                )
            sub.append(_table(["Split", "Participants", "Labels"], rows, caption=caption))
        history = training.get("history")
        suffix = "" if len(cards) == 1 else str(i)
        if isinstance(history, dict) and history:
            sub.append(
                _figure_item(
                    "Training curves",
                    context.figures / f"{stem}_desc-training{suffix}_curves.svg",
                    context,
                    "The loss and its terms per epoch, on the training participants (solid) "
                    "and the validation participants (dashed). The dotted line marks the "
                    "epoch of the lowest validation loss. A validation curve that rises "
                    "while the training curve falls is overfitting.",
                    lambda path, h=history: fig.plot_training_history(h, path=path),
                )
            )
        else:
            sub.append(_note("The model card holds no training history."))
        if len(cards) == 1:
            items.extend(sub)
        else:
            items.append(_section(f"model-{i}", name, sub, level="run"))
    return items


def read_log_warnings(output_dir: Path, subject: str | None = None) -> list[dict[str, Any]]:
    """Warnings and errors of the logs under ``OUTPUT_DIR/logs``.

    With ``subject``, records that name other participants (``sub-<label>``) but not this
    one are left out. Identical messages are counted once.

    Returns
    -------
    list of dict
        Keys ``level``, ``time`` (first occurrence), ``message``, ``count``, ``log``.
    """
    records: list[dict[str, Any]] = []
    for path in sorted((Path(output_dir) / "logs").glob("*.log")):
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        current = None
        for line in lines:
            match = _LOG_RECORD.match(line)
            if match:
                current = None
                if match["level"] in ("WARNING", "ERROR", "CRITICAL"):
                    current = {
                        "level": match["level"],
                        "time": match["time"],
                        "message": match["message"].strip(),
                        "log": path.name,
                    }
                    records.append(current)
            elif current is not None and line.strip() and current["message"].count("\n") < 8:
                current["message"] += "\n" + line.rstrip()
    if subject is not None:
        mine = f"sub-{subject}"
        others = re.compile(r"\bsub-([A-Za-z0-9]+)")
        records = [
            r
            for r in records
            if mine in r["message"] or not any(m != subject for m in others.findall(r["message"]))
        ]
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        key = (record["level"], record["message"])
        if key in unique:
            unique[key]["count"] += 1
        else:
            unique[key] = {**record, "count": 1}
    return list(unique.values())


def _warning_items(output_dir: Path, subject: str | None) -> list[dict]:
    records = read_log_warnings(output_dir, subject)
    if not records:
        return [_text("The logs of this output hold no warning and no error.")]
    return [
        _table(
            ["Level", "Time", "Message", "Times", "Log"],
            [
                [r["level"], r["time"][:19], r["message"], str(r["count"]), r["log"]]
                for r in records
            ],
            classes=[r["level"].lower() for r in records],
            css="log",
            caption="Warnings and errors logged while this output was made, from OUTPUT_DIR/"
            "logs (identical messages once, with their count). Read them before trusting the "
            "results above.",
        )
    ]


def _about_items(context: _Context) -> list[dict]:
    now = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return [
        _facts(
            [
                ("Software", f"bids-eeg2fmri {__version__}"),
                ("Report written", now),
            ]
        ),
        _text(METHODS_TEXT),
    ]


# --------------------------------------------------------------------------------------
# Group pieces


def _group_metrics(output_dir: Path):
    """The group metrics table and where it came from (None if there is none)."""
    import pandas as pd

    path = output_dir / "group_desc-synth_metrics.tsv"
    table = _read_tsv(path)
    if table is not None and {"participant", "method"} <= set(table.columns):
        return table, path.name
    frames = []
    for tsv in sorted(output_dir.glob("sub-*/**/func/*_desc-synth_metrics.tsv")):
        run = _read_tsv(tsv)
        if run is None or "method" not in run:
            continue
        columns = [c for c, _ in TABLE_METRICS if c in run]
        means = run.groupby("method", sort=False)[columns].mean().reset_index()
        means["participant"] = tsv.name.split("_")[0].removeprefix("sub-")
        means["run"] = tsv.name.split("_desc-")[0]
        means["n_volumes"] = run.groupby("method", sort=False).size().to_numpy()
        frames.append(means)
    if not frames:
        return None, None
    return pd.concat(frames, ignore_index=True), "the participants' *_desc-synth_metrics.tsv"


def _group_summary_table(table) -> dict:
    from bids_eeg2fmri.reports.figures import order_methods, participant_means

    columns = [(c, h) for c, h in TABLE_METRICS if _has_values(table, c)]
    means = participant_means(table, [c for c, _ in columns])
    rows, classes = [], []
    for method in order_methods(means["method"]):
        sub = means[means["method"] == method]
        row = [method, str(sub["participant"].nunique())]
        for column, _ in columns:
            values = np.asarray(sub[column], dtype=float)
            values = values[np.isfinite(values)]
            if values.size == 0:
                row.append("n/a")
            elif values.size == 1:
                row.append(_fmt(values[0]))
            else:
                row.append(f"{_fmt(values.mean())} ± {_fmt(values.std(ddof=1))}")
        rows.append(row)
        classes.append("model" if method == "model" else "")
    return _table(
        ["Method", "Participants", *(h for _, h in columns)],
        rows,
        classes=classes,
        caption="Mean ± sd across participants (each participant: the mean over their "
        "runs) of the run-level metrics.",
    )


def _group_relevance_items(output_dir: Path, context: _Context, pd) -> list[dict]:
    from bids_eeg2fmri.reports import figures as fig

    per_participant, older = [], []
    needed = {"region", "channel", "frequency", "relevance", "absolute_relevance"}
    for tsv in sorted(output_dir.glob("sub-*/**/eeg/*_desc-lrp_relevance.tsv")):
        table = _read_tsv(tsv)
        if table is None or not needed <= set(table):
            older += [tsv.name] if table is not None and "relevance" in table else []
            continue
        bands = fig.band_relevance(table)
        bands["participant"] = tsv.name.split("_")[0]
        per_participant.append(bands)
    notes = (
        [
            _note(
                f"Left out of the mean: {', '.join(older)}, written by a version whose relevance "
                "column had another meaning (no absolute_relevance column)."
            )
        ]
        if older
        else []
    )
    if not per_participant:
        return notes or [_note("No *_desc-lrp_relevance.tsv was found: no relevance to average.")]
    every = pd.concat(per_participant, ignore_index=True)
    keys = ["region", "channel", "band"]
    # Mean over a participant's runs, then over participants.
    means = (
        every.groupby(["participant", *keys], observed=True, sort=False)["relevance"]
        .mean()
        .reset_index()
        .groupby(keys, observed=True, sort=False)["relevance"]
        .mean()
        .reset_index()
    )
    n = every["participant"].nunique()
    return [
        *notes,
        _figure_item(
            "Mean relevance across participants",
            context.figures / "group_desc-lrp_relevance.png",
            context,
            f"Scalp maps of the LRP relevance (signed by the way each signal moved, as in the "
            f"participants' reports), summed over lags and averaged "
            f"over the frequency bins of each band, then over each participant's runs and {n} "
            "participant(s). Rows: the explained signal ('volume': the whole synthesized "
            "volume, then regions); each row has its own colour scale, symmetric around 0 "
            "unless every value is positive. A pattern seen at group level is shared across "
            "people rather than the trait of one.",
            lambda path: fig.plot_relevance_topomaps(means, path=path),
        ),
    ]


# --------------------------------------------------------------------------------------
# Small helpers


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


def _nanmean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def _fmt(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if not np.isfinite(value):
        return "n/a"
    return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.4g}"


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


def _href(path: Path, html_dir: Path) -> str:
    return quote(Path(os.path.relpath(path, html_dir)).as_posix())


def _guarded(build: Callable[[], list[dict]], what: str) -> list[dict]:
    """``build()``, or a note if it failed on unexpected content (the report goes on)."""
    try:
        return build()
    except Exception as exc:
        LOGGER.warning("Report: %s could not be shown: %s", what, exc)
        return [_note(f"{what} could not be shown ({type(exc).__name__}: {exc}).")]


def _figure_item(
    title: str, path: Path, context: _Context, caption: str, draw: Callable[[Path], Any]
) -> dict:
    """Draw a figure to ``path``; its item, or a note if drawing failed."""
    try:
        draw(path)
    except Exception as exc:
        LOGGER.warning("Report figure %s could not be drawn: %s", path.name, exc)
        return _note(f"{title}: the figure could not be drawn ({exc}).")
    return {
        "kind": "figure",
        "title": title,
        "src": _href(path, context.html_dir),
        "caption": caption,
    }


def _text(text: str) -> dict:
    return {"kind": "text", "text": text}


def _note(text: str) -> dict:
    return {"kind": "note", "text": text}


def _facts(entries: Iterable[tuple[str, str]]) -> dict:
    return {"kind": "facts", "entries": list(entries)}


def _table(columns, rows, *, title=None, caption=None, classes=None, css="") -> dict:
    return {
        "kind": "table",
        "css": css,
        "title": title,
        "columns": list(columns),
        "rows": rows,
        "caption": caption,
        "classes": classes,
    }


def _section(ident: str, title: str, items: list[dict], level: str = "top") -> dict:
    return {"kind": "section", "id": ident, "title": title, "items": items, "level": level}


def _render(path: Path, *, title: str, subtitle: str, sections: list[dict]) -> Path:
    """Render the page template and write it atomically."""
    from importlib.resources import files

    import jinja2

    source = files("bids_eeg2fmri.reports").joinpath("templates", "report.html.j2")
    environment = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    template = environment.from_string(source.read_text(encoding="utf-8"))
    html = template.render(
        title=title,
        subtitle=subtitle,
        sections=sections,
        version=__version__,
        date=_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    )
    return write_text_atomic(path, html)
