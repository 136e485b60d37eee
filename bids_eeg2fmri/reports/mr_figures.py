"""Figures of the MR artifact correction: spectra before and after, one epoch, R peaks.

Plain functions on arrays that write one figure each (SVG, atomically), drawn by the
correction step itself, which holds the full-rate data (the report only embeds them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bids_eeg2fmri.reports.figures.common import _new_figure, _save


def plot_spectra(
    freqs: np.ndarray,
    spectra: dict[str, np.ndarray],
    *,
    path: Path,
    tr: float,
    slice_frequency: float | None = None,
) -> Path:
    """Median PSD over the EEG channels (dB re 1 µV²/Hz) before and after correction (and
    of the clean EEG when known), the volume and slice harmonics marked.

    Parameters
    ----------
    spectra
        ``{"before": psd, "after": psd, "clean": psd}`` in V²/Hz, shape (n_freqs,) each.
    """
    figure = _new_figure(8.0, 3.8)
    ax = figure.subplots()
    styles = {"before": ("C3", "raw"), "after": ("C0", "corrected"), "clean": ("0.3", "clean")}
    keep = freqs > 0
    for key, psd in spectra.items():
        colour, label = styles.get(key, ("C2", key))
        db = 10 * np.log10(np.maximum(np.asarray(psd)[keep], 1e-30) / 1e-12)
        ax.plot(
            freqs[keep], db, color=colour, lw=0.9, label=label, ls="--" if key == "clean" else "-"
        )
    top = float(freqs[-1])
    for k in range(1, 6):
        if k / tr < top:
            ax.axvline(k / tr, color="C1", lw=0.6, alpha=0.6)
    if slice_frequency:
        for k in range(1, int(top / slice_frequency) + 1):
            ax.axvline(k * slice_frequency, color="C4", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel(
        "frequency (Hz); orange: volume harmonics 1-5"
        + ("; purple: slice harmonics" if slice_frequency else "")
    )
    ax.set_ylabel("PSD (dB re 1 µV²/Hz)")
    ax.grid(True, color="0.9")
    ax.legend(loc="best", fontsize=8, frameon=False)
    figure.tight_layout()
    return _save(figure, path)


def plot_epoch(
    before: np.ndarray, after: np.ndarray, *, sfreq: float, channel: str, path: Path
) -> Path:
    """One artifact epoch of one channel (µV) before and after the gradient correction."""
    times = np.arange(before.size) / sfreq
    figure = _new_figure(8.0, 4.2)
    top, bottom = figure.subplots(2, 1, sharex=True)
    top.plot(times, before * 1e6, color="C3", lw=0.5)
    top.set_ylabel("raw (µV)")
    bottom.plot(times, after * 1e6, color="C0", lw=0.6)
    bottom.set_ylabel("corrected (µV)")
    bottom.set_xlabel(f"time from the epoch's marker (s), channel {channel}")
    for ax in (top, bottom):
        ax.grid(True, color="0.9")
    figure.tight_layout()
    return _save(figure, path)


def plot_r_peaks(
    ecg: np.ndarray, peaks: np.ndarray, *, sfreq: float, heart_rate: float, path: Path
) -> Path:
    """Ten seconds of the corrected ECG (from the middle of the run) with its R peaks."""
    n = ecg.size
    width = int(min(n, 10 * sfreq))
    start = max(0, (n - width) // 2)
    times = (start + np.arange(width)) / sfreq
    figure = _new_figure(8.0, 2.6)
    ax = figure.subplots()
    ax.plot(times, ecg[start : start + width] * 1e3, color="0.2", lw=0.7)
    shown = peaks[(peaks >= times[0]) & (peaks <= times[-1])] if width else peaks[:0]
    index = np.clip(np.round(shown * sfreq).astype(int) - start, 0, max(width - 1, 0))
    ax.plot(shown, ecg[start : start + width][index] * 1e3, "v", color="C3", ms=6)
    ax.set_xlabel(f"time (s); {peaks.size} R peaks, {heart_rate:.0f} beats per minute")
    ax.set_ylabel("ECG (mV)")
    ax.grid(True, color="0.9")
    figure.tight_layout()
    return _save(figure, path)
