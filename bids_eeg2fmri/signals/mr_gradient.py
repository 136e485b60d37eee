"""Gradient (imaging) artifact removal: aligned average artifact subtraction, then an
optimal basis set of the residual. Pure functions on arrays (no MNE, no files).

The recording is cut into *artifact epochs* that start at the scanner's markers (volumes,
or slices when the scanner marks them); epoch ``k`` is corrected on the samples
``[s_k, min(s_{k+1}, s_k + length))``. Per channel:

1. **Sub-sample alignment.** Markers fall on EEG samples, the scanner's clock does not:
   the artifact of epoch ``k`` starts ``d_k`` samples (a fraction, drifting) away from
   its marker. :func:`estimate_shifts` finds ``d_k`` once for the whole recording (it is
   the same for every channel) by maximising the correlation of each epoch with a
   reference template on the channels with the largest artifact, with the shift applied
   as a phase ramp in the frequency domain (the recording is never upsampled).
2. **Sliding template** (average artifact subtraction, Allen et al. 2000): the template
   of epoch ``k`` is the mean of its ``window`` nearest aligned epochs, ``k`` itself
   excluded (so its own EEG is not subtracted); near the ends of the run the nearest
   ``window`` epochs on one side, so that the first and last epochs are corrected too.
   The template is shifted back by ``d_k`` and scaled to the epoch by least squares
   (``alpha_k = <e_k, A_k> / <A_k, A_k>``, which follows slow amplitude changes).
3. **Optimal basis set** (Niazy et al. 2005): the residuals of a block of epochs give
   their first ``n_components`` principal components, and each epoch's projection on them
   is removed. As in FASTR, the components see only the residual above ``obs_high_pass``
   Hz, where the artifact outweighs the EEG; here also the frequencies where the template
   is ``obs_artifact_db`` dB above the residual's median power (the slice harmonics),
   where what is left is artifact, not EEG. The EEG elsewhere is left alone.

Segments carry ``pad`` samples of the neighbouring data on each side, tapered, so that
phase shifts do not wrap the epoch's edges into each other. Work happens in blocks of
epochs (memory does not grow with the recording's length).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

#: Defaults chosen by measurement (benchmarks/NOTES.md, "Gradient artifact defaults").
DEFAULT_WINDOW = 30
DEFAULT_COMPONENTS = 4
DEFAULT_OBS_HIGH_PASS = 70.0
DEFAULT_PAD = 32
DEFAULT_BLOCK = 192
DEFAULT_OBS_ARTIFACT_DB = 30.0


class GradientError(ValueError):
    """The markers do not allow a gradient correction (the message says why)."""


@dataclass(frozen=True)
class EpochGrid:
    """Where the artifact epochs are.

    Attributes
    ----------
    starts : ndarray of int64, shape (n_epochs,)
        First sample of each epoch (a marker, or a marker extrapolated on its grid).
    length : int
        Samples of the template (every epoch is corrected on at most this many).
    marked : ndarray of bool, shape (n_epochs,)
        False for epochs added before the first or after the last marker.
    stride : int
        Epochs per volume: 1 for volume epochs; the slices per volume for slice epochs,
        whose templates average the same slice of the neighbouring volumes (neighbouring
        slices, 60 ms apart, share the slow EEG, which a template of them would remove).
    """

    starts: np.ndarray
    length: int
    marked: np.ndarray
    stride: int = 1

    @property
    def n_epochs(self) -> int:
        return int(self.starts.size)

    def stops(self, n_times: int) -> np.ndarray:
        """Last sample (exclusive) each epoch corrects: the next start or the length."""
        nxt = np.append(self.starts[1:], np.iinfo(np.int64).max)
        return np.minimum(np.minimum(nxt, self.starts + self.length), n_times)


def epoch_grid(markers: np.ndarray, *, n_times: int, min_epochs: int = 4) -> EpochGrid:
    """The epochs of a marker list (samples, sorted): one per marker.

    ``length`` is one sample more than the median marker spacing (markers that follow a
    non-integer period alternate between two spacings).

    Raises
    ------
    GradientError
        Fewer than ``min_epochs`` markers, or markers outside the recording.
    """
    starts = np.unique(np.asarray(markers, dtype=np.int64))
    if starts.size < min_epochs:
        raise GradientError(
            f"{starts.size} artifact epoch(s): at least {min_epochs} are needed for a template"
        )
    if starts[0] < 0 or starts[-1] >= n_times:
        raise GradientError(
            f"markers outside the recording (samples {starts[0]} to {starts[-1]} of {n_times})"
        )
    length = int(np.median(np.diff(starts))) + 1
    return EpochGrid(starts, length, np.ones(starts.size, bool))


def extend_grid(
    grid: EpochGrid, references: np.ndarray, *, min_correlation: float = 0.5, max_extra: int = 64
) -> EpochGrid:
    """Add the unmarked epochs before the first and after the last marker that carry the
    artifact (scanners start before their first marker, e.g. with dummy volumes).

    Candidates follow the mean marker spacing outwards; one is kept while its correlation
    with the mean of the first (last) marked epochs, over ``references`` (channels with a
    strong artifact), is at least ``min_correlation``. An epoch that would start before
    the first sample or end after the last is not added.

    Parameters
    ----------
    references : ndarray, shape (n_ref, n_times)
    """
    n_times = references.shape[1]
    spacing = float(np.mean(np.diff(grid.starts)))
    n_mean = min(8, grid.n_epochs)
    before, after = [], []
    for side in (-1, 1):
        anchor = grid.starts[:n_mean] if side < 0 else grid.starts[-n_mean:]
        template = np.mean([references[:, s : s + grid.length] for s in anchor], axis=0)
        edge = grid.starts[0] if side < 0 else grid.starts[-1]
        for j in range(1, max_extra + 1):
            start = int(round(edge + side * j * spacing))
            if start < 0 or start + grid.length > n_times:
                break
            segment = references[:, start : start + grid.length]
            if _correlation(segment, template) < min_correlation:
                break
            (before if side < 0 else after).append(start)
    starts = np.concatenate([before[::-1], grid.starts, after]).astype(np.int64)
    marked = np.concatenate([np.zeros(len(before), bool), grid.marked, np.zeros(len(after), bool)])
    return EpochGrid(starts, grid.length, marked)


def slice_grid(volumes: EpochGrid, slices: np.ndarray, *, n_times: int) -> EpochGrid:
    """Slice epochs: the slice markers of the marked volumes of ``volumes`` (the same
    number in each), and for its unmarked volumes the first marked volume's slice
    offsets. ``slices`` are sorted samples."""
    marked_starts = volumes.starts[volumes.marked]
    per_volume = np.split(slices, np.searchsorted(slices, marked_starts[1:]))
    n_slices = per_volume[0].size
    offsets = per_volume[0] - marked_starts[0]
    starts, marked = [], []
    j = 0
    for start, is_marked in zip(volumes.starts, volumes.marked, strict=True):
        if is_marked:
            starts.append(per_volume[j])
            j += 1
        else:
            starts.append(start + offsets)
        marked.append(np.full(n_slices, is_marked))
    starts = np.concatenate(starts).astype(np.int64)
    keep = (starts >= 0) & (starts < n_times)
    length = int(np.median(np.diff(per_volume[0]))) + 1
    if not keep.all():  # a partial volume at an edge: drop it whole (the stride must hold)
        whole = keep.reshape(-1, n_slices).all(axis=1)
        starts = starts.reshape(-1, n_slices)[whole].ravel()
        marked = np.asarray(marked)[whole]
    return EpochGrid(starts, length, np.concatenate(marked), stride=n_slices)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    denominator = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / denominator) if denominator > 0 else 0.0


# ----------------------------------------------------------------------------- segments
def _fft_size(length: int, pad: int) -> int:
    return sfft.next_fast_len(length + 2 * pad, real=True)


def _taper(length: int, pad: int, size: int) -> np.ndarray:
    """1 on the epoch, a half-cosine over each pad, 0 beyond (up to the FFT size)."""
    taper = np.zeros(size)
    taper[pad : pad + length] = 1.0
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(pad) + 0.5) / pad)
    taper[:pad] = ramp
    taper[pad + length : 2 * pad + length] = ramp[::-1]
    return taper


def _segments(x: np.ndarray, starts: np.ndarray, length: int, pad: int, size: int):
    """Rows ``x[s - pad : s + length + pad]`` (zeros outside ``x``), shape (n, size),
    and the mask of the samples that are inside ``x``."""
    width = length + 2 * pad
    begin = np.asarray(starts, np.int64) - pad
    rows = np.zeros((begin.size, size))
    mask = np.zeros((begin.size, size), bool)
    full = (begin >= 0) & (begin + width <= x.shape[-1])
    if full.any():
        rows[full, :width] = np.lib.stride_tricks.sliding_window_view(x, width)[begin[full]]
        mask[full, :width] = True
    for i in np.flatnonzero(~full):  # epochs at the edges of the recording
        a, b = max(int(begin[i]), 0), min(int(begin[i]) + width, x.shape[-1])
        if b > a:
            rows[i, a - begin[i] : b - begin[i]] = x[a:b]
            mask[i, a - begin[i] : b - begin[i]] = True
    return rows, mask


def _phase(shifts: np.ndarray, size: int) -> np.ndarray:
    """``exp(2 pi i f d)`` per epoch: multiplying a spectrum by it advances by ``d`` samples."""
    freqs = np.arange(size // 2 + 1) / size
    return np.exp(2j * np.pi * np.outer(shifts, freqs))


# ----------------------------------------------------------------------------- alignment
def estimate_shifts(
    references: np.ndarray,
    grid: EpochGrid,
    *,
    pad: int = DEFAULT_PAD,
    max_shift: float = 3.0,
    iterations: int = 3,
    block: int = DEFAULT_BLOCK,
) -> np.ndarray:
    """Sub-sample delay (samples) of each epoch's artifact, common to all channels.

    The reference is the mean of all aligned epochs over ``references`` (the channels
    with the largest artifact); each epoch's delay maximises its cross-correlation with
    it: a search on a quarter-sample grid within ``max_shift``, then Newton steps on the
    cross-spectrum. ``iterations`` rounds re-estimate against the re-aligned reference.
    Epochs are handled in blocks (memory does not grow with the recording). Delays are
    centred on their median.

    Parameters
    ----------
    references : ndarray, shape (n_ref, n_times)

    Returns
    -------
    ndarray, shape (n_epochs,)
    """
    size = _fft_size(grid.length, pad)
    taper = _taper(grid.length, pad, size).astype(np.float32)
    omega = 2 * np.pi * np.arange(size // 2 + 1) / size
    trial = np.arange(-max_shift, max_shift + 1e-9, 0.25)
    trial_phase = np.exp(1j * np.outer(omega, trial))  # (n_freqs, n_trial)
    blocks = [np.arange(a, min(a + block, grid.n_epochs)) for a in range(0, grid.n_epochs, block)]

    def spectra(idx):
        out = []
        for channel in references:
            rows, _ = _segments(channel, grid.starts[idx], grid.length, pad, size)
            rows -= rows[:, pad : pad + grid.length].mean(axis=1, keepdims=True)
            out.append(sfft.rfft((rows * taper).astype(np.float32), axis=1, workers=1))
        return np.stack(out)  # (n_ref, n_block, n_freqs)

    shifts = np.zeros(grid.n_epochs)
    for _ in range(iterations):
        reference = 0
        for idx in blocks:  # the mean of the epochs aligned by the current delays
            reference = reference + np.sum(spectra(idx) * _phase(shifts[idx], size)[None], 1)
        reference = np.conj(reference / grid.n_epochs)  # (n_ref, n_freqs)
        new = np.empty(grid.n_epochs)
        for idx in blocks:
            cross = np.sum(spectra(idx) * reference[:, None, :], axis=0)  # (n_block, n_f)
            tau = trial[np.argmax(np.real(cross @ trial_phase), axis=1)]
            for _newton in range(4):
                rotated = cross * np.exp(1j * np.outer(tau, omega))
                first = -np.imag(rotated) @ omega
                second = -np.real(rotated) @ (omega**2)
                step = np.where(second < 0, -first / np.where(second < 0, second, -1.0), 0.0)
                tau = np.clip(tau + np.clip(step, -0.25, 0.25), -max_shift, max_shift)
            new[idx] = tau
        shifts = new - np.median(new)
    return shifts


# ----------------------------------------------------------------------------- correction
@dataclass(frozen=True)
class GradientPlan:
    """What every channel's correction shares: the epochs, their delays, the FFT size,
    the taper and each epoch's phase ramp (computed once per recording)."""

    grid: EpochGrid
    shifts: np.ndarray
    pad: int
    size: int
    taper: np.ndarray
    phase: np.ndarray  # (n_epochs, size // 2 + 1), complex64


def make_plan(grid: EpochGrid, shifts: np.ndarray, *, pad: int = DEFAULT_PAD) -> GradientPlan:
    """The shared part of :func:`correct_channel` for one recording."""
    size = _fft_size(grid.length, pad)
    return GradientPlan(
        grid=grid,
        shifts=np.asarray(shifts, float),
        pad=pad,
        size=size,
        taper=_taper(grid.length, pad, size).astype(np.float32),
        phase=_phase(np.asarray(shifts, float), size).astype(np.complex64),
    )


def correct_channel(
    x: np.ndarray,
    plan: GradientPlan,
    *,
    sfreq: float,
    window: int = DEFAULT_WINDOW,
    n_components: int = DEFAULT_COMPONENTS,
    obs_high_pass: float = DEFAULT_OBS_HIGH_PASS,
    obs_artifact_db: float | None = DEFAULT_OBS_ARTIFACT_DB,
    scale: bool = True,
    block: int = DEFAULT_BLOCK,
) -> np.ndarray:
    """One channel without its gradient artifact (samples outside the epochs unchanged).

    Parameters
    ----------
    x : ndarray, shape (n_times,)
        The channel, any unit.
    plan
        From :func:`make_plan` on the epochs (:func:`epoch_grid`, :func:`extend_grid`)
        and their delays (:func:`estimate_shifts`).
    window
        Neighbouring epochs averaged into each template (``k`` itself excluded).
    n_components
        Principal components of the residual removed per epoch (0: none).
    obs_high_pass
        The components are fitted to the residual above this frequency (Hz)...
    obs_artifact_db
        ... and at the frequencies where the template's power is this many dB above the
        residual's median power (None: above ``obs_high_pass`` only, as FASTR).
    scale
        Scale each template to its epoch by least squares.

    Returns
    -------
    ndarray, shape (n_times,), float64
    """
    grid = plan.grid
    x = np.asarray(x, dtype=np.float64)
    out = x.copy()
    stops = grid.stops(out.size)
    for phase in range(grid.stride):  # slice epochs: one sequence per slice position
        sequence = np.arange(phase, grid.n_epochs, grid.stride)
        _correct_sequence(
            x,
            out,
            sequence,
            stops[sequence],
            plan,
            sfreq=sfreq,
            window=window,
            n_components=n_components,
            obs_high_pass=obs_high_pass,
            obs_artifact_db=obs_artifact_db,
            scale=scale,
            block=block,
        )
    return out


def _correct_sequence(
    x,
    out,
    sequence,
    stops,
    plan,
    *,
    sfreq,
    window,
    n_components,
    obs_high_pass,
    obs_artifact_db,
    scale,
    block,
) -> None:
    """Subtract the templates of the epochs ``sequence`` (indices into the plan's grid,
    ascending), whose neighbours are each other, from ``out``."""
    grid, pad, size = plan.grid, plan.pad, plan.size
    starts, phases = grid.starts[sequence], plan.phase[sequence]
    n = sequence.size
    window = int(min(window, n - 1))
    if window < 1:
        raise GradientError(f"{n} artifact epoch(s): too few for a template")
    core = slice(pad, pad + grid.length)
    cut = int(np.ceil(obs_high_pass * size / sfreq))
    half = window // 2 + 1
    for first in range(0, n, block):
        last = min(n, first + block)
        lo, hi = max(0, first - half), min(n, last + half)  # epochs the templates need
        rows, inside = _segments(x, starts[lo:hi], grid.length, pad, size)
        edge = not inside.all()
        if edge:
            counted = np.maximum(inside[:, core].sum(axis=1), 1)
            rows -= (rows[:, core] * inside[:, core]).sum(axis=1, keepdims=True) / counted[:, None]
            rows *= inside  # zero outside the recording
        else:
            rows -= rows[:, core].mean(axis=1, keepdims=True)
        rows *= plan.taper
        spectra = sfft.rfft(rows.astype(np.float32), axis=1, workers=1)
        del rows
        aligned = spectra * phases[lo:hi]
        sums = np.zeros((hi - lo + 1, aligned.shape[1]), np.complex64)
        np.cumsum(aligned, axis=0, out=sums[1:])
        targets = np.arange(first, last)
        begin = np.clip(targets - window // 2, 0, n - window - 1)
        end = begin + window + 1  # window + 1 epochs, k included, then k taken out
        spec = (sums[end - lo] - sums[begin - lo] - aligned[targets - lo]) / window
        spec = (spec * np.conj(phases[targets])).astype(np.complex64)
        mask = inside[targets - lo][:, core] if edge else None
        templates = sfft.irfft(spec, n=size, axis=1, workers=1)[:, core]
        if edge:
            templates *= mask
        if scale:
            epochs, present = _segments(x, starts[targets], grid.length, 0, grid.length)
            counted = np.maximum(present.sum(axis=1, keepdims=True), 1)
            epochs -= epochs.sum(axis=1, keepdims=True) / counted
            epochs *= present
            power = np.sum(templates * templates, axis=1, dtype=np.float64)
            alpha = np.sum(epochs * templates, axis=1) / np.where(power > 0, power, 1.0)
            alpha = np.where(power > 0, np.clip(alpha, 0.5, 2.0), 1.0).astype(np.float32)
            templates *= alpha[:, None]
            spec *= alpha[:, None]
        if n_components > 0:
            residual = spectra[targets - lo] - spec  # the tapered residual, in frequency
            keep = np.zeros(residual.shape[1], bool)
            keep[cut:] = True  # above obs_high_pass
            if obs_artifact_db is not None:  # and where the artifact towers over the rest
                artifact = np.mean(np.abs(spec) ** 2, axis=0)
                rest = np.median(np.abs(residual) ** 2)
                keep |= artifact > 10 ** (obs_artifact_db / 10) * rest
            residual[:, ~keep] = 0.0
            high = sfft.irfft(residual, n=size, axis=1, workers=1)[:, core]
            if edge:
                high *= mask
            templates += _obs_fit(high, n_components)
        for j, k in enumerate(targets):
            start, stop = starts[k], stops[k]
            if stop > max(start, 0):
                begin_at = max(start, 0)
                out[begin_at:stop] -= templates[j, begin_at - start : stop - start]


def _obs_fit(high: np.ndarray, k: int) -> np.ndarray:
    """The high-passed residuals' projection on their first ``k`` principal components.
    Shape of ``high``: (n_epochs, length)."""
    k = min(k, high.shape[0] - 1)
    if k < 1:
        return np.zeros_like(high)
    basis = _principal_axes(high, k)  # (length, k)
    return (high @ basis) @ basis.T


def _principal_axes(rows: np.ndarray, k: int, *, oversample: int = 8, seed: int = 0):
    """The first ``k`` right singular vectors of ``rows`` (uncentred), by a randomized
    range finder with two power iterations (Halko et al. 2011). Shape (n_columns, k)."""
    rng = np.random.default_rng(seed)
    probe = rng.standard_normal((rows.shape[0], min(rows.shape[0], k + oversample)))
    basis = rows.T @ probe  # (length, k + p)
    for _ in range(2):
        basis, _ = np.linalg.qr(basis)
        basis = rows.T @ (rows @ basis)
    basis, _ = np.linalg.qr(basis)
    small = rows @ basis  # (n_epochs, k + p)
    _, _, vt = np.linalg.svd(small, full_matrices=False)
    return basis @ vt[:k].T
