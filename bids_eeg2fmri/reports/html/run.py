"""One run of a participant report: :class:`_RunReport` reads the run's files (synthesized
BOLD and its sidecar, volume onsets, metrics, relevance, attention graph, the observed
BOLD of the input dataset) and turns them into the run's row of the summary table and
its section (onsets, MR artifacts, slices, correlation map, metrics, relevance,
attention), each part guarded so that a missing or broken file gives a note.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from bids_eeg2fmri.reports.html.items import _figure_item, _guarded, _note, _section, _table
from bids_eeg2fmri.reports.html.metrics import FIGURE_METRICS, TABLE_METRICS, _run_metrics_rows
from bids_eeg2fmri.reports.html.outputs import (
    RunFiles,
    _Context,
    _has_values,
    _read_json,
    _read_tsv,
    _resolve,
    _uri_path,
)

LOGGER = logging.getLogger(__name__)


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
                    sfreq=_sampling_rate(table),
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


def _sampling_rate(volumes) -> float | None:
    """The sampling rate (Hz) of the EEG clock of a ``*_desc-volumes_events.tsv``, from its
    ``sample`` and ``onset`` columns (``sample = round(onset * sfreq)``), or None."""
    import pandas as pd

    if volumes is None or not {"onset", "sample"} <= set(volumes.columns):
        return None
    onset = pd.to_numeric(volumes["onset"], errors="coerce").to_numpy(dtype=float)
    sample = pd.to_numeric(volumes["sample"], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(onset) & np.isfinite(sample)
    if np.unique(onset[ok]).size < 2:
        return None
    slope = float(np.polyfit(onset[ok], sample[ok], 1)[0])
    return slope if np.isfinite(slope) and slope > 0 else None
