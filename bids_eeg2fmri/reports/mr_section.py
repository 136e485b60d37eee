"""The report's part on MR artifacts of one run: what was corrected, how well, and the
figures the correction step drew (read from OUTPUT_DIR, like every report part)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bids_eeg2fmri.reports.html.items import _facts, _href, _note, _table, _text
from bids_eeg2fmri.reports.html.outputs import _read_tsv

#: (column stem, label) of the summary table; ``_before``/``_after``/``_clean`` appended.
_ROWS = (
    ("volume_contrast", "volume-harmonic contrast (dB; clean EEG about 0)"),
    ("volume_power", "power at volume harmonics 1-5 (dB re 1 V²/Hz)"),
    ("slice_power", "power at slice harmonics 1-5 (dB re 1 V²/Hz)"),
)
_FIGURES = (
    (
        "mrspectra_psd",
        "Spectrum before and after",
        "Median power spectral density over the EEG channels, over the same stretch of "
        "the scan, before (red) and after (blue) correction, and of the clean EEG where it "
        "is known (simulated data, dashed). Orange lines: volume harmonics; purple: slice "
        "harmonics. After a good correction the blue line has no peaks there.",
    ),
    (
        "mrepoch_eeg",
        "One artifact epoch",
        "The epoch in the middle of the scan on the channel with the largest artifact, "
        "raw (top) and gradient-corrected (bottom), at the recording's rate.",
    ),
    (
        "mrpeaks_ecg",
        "R peaks",
        "Ten seconds of the gradient-corrected ECG with the R peaks that timed the pulse "
        "artifact's correction.",
    ),
)


def mr_items(*, eeg_dir: Path, run_name: str, figures: Path, html_dir: Path) -> list[dict]:
    """Items of the run's MR section; empty when the run's EEG was not corrected."""
    metrics = eeg_dir / f"{run_name}_desc-mrcorrected_metrics.tsv"
    if not metrics.is_file():
        return []
    sidecar = _json(metrics.with_suffix(".json"))
    run = sidecar.get("Run", {})
    gradient, pulse = run.get("Gradient", {}), run.get("Pulse", {})
    items: list[dict] = [
        _text(f"MR artifacts: {run.get('Decision', 'no record of the decision')}."),
        _facts(_facts_of(gradient, pulse, run.get("Settings", {}))),
    ]
    for warning in run.get("Warnings", []):
        items.append(_note(f"Warning: {warning}."))
    table = _read_tsv(metrics)
    if table is not None and "type" in table:
        items.append(_summary(table))
    for stem, title, caption in _FIGURES:
        path = figures / f"{run_name}_desc-{stem}.svg"
        if path.is_file():
            items.append(
                {"kind": "figure", "title": title, "src": _href(path, html_dir), "caption": caption}
            )
    return items


def _facts_of(gradient: dict, pulse: dict, settings: dict) -> list[tuple[str, str]]:
    facts = []
    if gradient.get("corrected"):
        facts.append(
            (
                "Gradient",
                f"{gradient.get('n_epochs')} {gradient.get('epochs')} epochs "
                f"({gradient.get('n_unmarked', 0)} unmarked volume(s) found before or after the "
                f"markers), template of {settings.get('GradientTemplateEpochs')} epochs, "
                f"{settings.get('GradientOBSComponents')} basis-set components; epochs "
                f"correlate with their neighbours at {gradient.get('lock')}; sub-sample shifts "
                f"spread over {gradient.get('shift_range_samples')} samples",
            )
        )
    else:
        facts.append(("Gradient", f"not corrected ({gradient.get('contrast_db')} dB)"))
    if pulse.get("n_r_peaks") is not None:
        facts.append(
            (
                "Heart",
                f"{pulse['n_r_peaks']} R peaks on {pulse.get('ecg_channel')}, "
                f"{pulse.get('heart_rate_bpm')} beats per minute (interval variation "
                f"{pulse.get('rr_cv')})",
            )
        )
    facts.append(
        (
            "Pulse",
            f"corrected, template of {settings.get('PulseTemplateBeats')} beats"
            if pulse.get("corrected")
            else f"not corrected ({pulse.get('skipped', 'not detected')})",
        )
    )
    return facts


def _summary(table) -> dict:
    eeg = table[table["type"].astype(str).str.upper() == "EEG"]
    rows = []
    for stem, label in _ROWS:
        cells = [_stat(eeg, f"{stem}_{when}") for when in ("before", "after", "clean")]
        if any(c != "n/a" for c in cells):
            rows.append([label, *cells])
    for column, label in (
        ("rms_ratio", "RMS raw / corrected"),
        ("r_clean", "r with the clean EEG, 1-45 Hz"),
        ("delta_power_error_pct", "delta power error (%)"),
        ("theta_power_error_pct", "theta power error (%)"),
        ("alpha_power_error_pct", "alpha power error (%)"),
        ("beta_power_error_pct", "beta power error (%)"),
    ):
        if column in eeg:
            rows.append([label, "", _stat(eeg, column), ""])
    return _table(
        ["EEG channels: median (min-max)", "raw", "corrected", "clean"],
        rows,
        caption="Per-channel values in the _desc-mrcorrected_metrics.tsv beside the corrected "
        "EEG (its JSON gives each formula). 'clean' exists for simulated data only.",
    )


def _stat(table, column: str) -> str:
    if column not in table:
        return "n/a"
    values = np.asarray(table[column], float)
    values = values[np.isfinite(values)]
    if not values.size:
        return "n/a"
    return f"{np.median(values):.3g} ({values.min():.3g} to {values.max():.3g})"


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
