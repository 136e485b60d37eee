"""Thin nipype interfaces: load files, call the plain functions of ``signals``, save.

Heavy imports happen inside ``_run_interface``, so building a workflow stays cheap.
Errors are re-raised with the file name in front, as one line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

LOGGER = logging.getLogger("bids_eeg2fmri")


def _named(err: Exception, path: str) -> Exception:
    """The same exception type with the file name in front of its message (unless the
    message names the file already)."""
    if str(err).startswith(f"{path}: "):
        return err
    return type(err)(f"{Path(path).name}: {err}")


def _positions(inputs):
    """The recording's positions (its _electrodes.tsv, when there is one) and the model's
    (its card's), as :class:`~bids_eeg2fmri.signals.positions.Positions` or None."""
    from bids_eeg2fmri.signals import positions as pos
    from bids_eeg2fmri.signals.eeg import EEGError

    recording = model = None
    try:
        if isdefined(inputs.electrodes_tsv):
            coordsystem = inputs.coordsystem_json if isdefined(inputs.coordsystem_json) else None
            recording = pos.read_electrodes(Path(inputs.electrodes_tsv), coordsystem)
        if isdefined(inputs.model_positions) and inputs.model_positions:
            model = pos.positions_from_json(inputs.model_positions)
    except pos.PositionError as err:
        raise EEGError(str(err)) from None
    return recording, model


def _left_out(names: list[str], dropped: list[str], where, what: str, shown=None) -> list[str]:
    """``names`` without ``dropped``, with a warning that they are treated as missing."""
    if dropped:
        LOGGER.warning(
            "%s: %d of %d EEG channels %s (%s): treated as missing channels, left out of the "
            "features (the model's among them are interpolated)",
            where,
            len(dropped),
            len(names),
            what,
            ", ".join(shown or dropped),
        )
    return [n for n in names if n not in dropped]


def _log_mapping(mapping, name: str, n_model: int) -> list[str]:
    """Warn of the interpolated model channels (how many, from what, from how far)."""
    if mapping is None:
        return []
    import numpy as np

    from bids_eeg2fmri.signals.positions import FAR_MM

    distances = mapping.distance_mm
    farthest = max(distances, key=distances.get)
    shown = ", ".join(mapping.targets[:8]) + (" ..." if len(mapping.targets) > 8 else "")
    LOGGER.warning(
        "%s: interpolated missing channel(s) %s: %d of the model's %d channels (%.0f %%), "
        "from %d channels placed by %s; nearest electrode median %.0f mm, at most %.0f mm (%s)",
        name,
        shown,
        len(mapping.targets),
        n_model,
        100 * len(mapping.targets) / n_model,
        len(mapping.sources),
        mapping.positions_from,
        float(np.median(list(distances.values()))),
        distances[farthest],
        farthest,
    )
    far = [c for c, mm in distances.items() if mm > FAR_MM]
    if far:
        LOGGER.warning(
            "%s: %d interpolated channel(s) lie more than %.0f mm from any electrode of the "
            "recording (%s): their EEG is extrapolated, not interpolated",
            name,
            len(far),
            FAR_MM,
            ", ".join(far[:8]),
        )
    return list(mapping.targets)


def _mapping_info(mapping) -> dict | None:
    """What features.json records of the interpolation."""
    if mapping is None:
        return None
    return {
        "positions_from": mapping.positions_from,
        "n_sources": len(mapping.sources),
        "distance_mm": mapping.distance_mm,
    }


def _channel_positions(channels, model_positions, positions) -> dict | None:
    """The model channels' positions for a model card: the card's own, else those of the
    recording's positions or a standard montage when they place every channel."""
    from bids_eeg2fmri.signals.positions import Positions, standard_positions

    def places_all(known) -> bool:
        return known is not None and all(c in known.xyz for c in channels)

    known = next((k for k in (model_positions, positions) if places_all(k)), None)
    if known is None:  # a standard montage is looked up only when needed
        known = standard_positions(channels)
    if not places_all(known):
        return None
    return Positions(known.source, {c: known.xyz[c] for c in channels}).to_json()


# ----------------------------------------------------------------------------- timing
class _VolumeTimingInputSpec(BaseInterfaceInputSpec):
    eeg_file = File(exists=True, mandatory=True, desc="EEG recording (.vhdr, .edf, .bdf, .set)")
    events_tsv = File(exists=True, desc="the recording's _events.tsv, read besides its annotations")
    n_volumes = traits.Int(-1, usedefault=True, desc="stored BOLD volumes to time; -1: EEG only")
    n_discarded = traits.Int(
        0, usedefault=True, desc="volumes acquired before the first stored one"
    )
    tr = traits.Float(desc="repetition time in s (from the BOLD sidecar)")
    eeg_only_tr = traits.Float(desc="TR of EEG-only runs without markers")
    volume_marker = traits.Str(mandatory=True, desc="regular expression of the marker descriptions")
    first_volume_onset = traits.Float(
        desc="onset of the first stored volume when there are no markers"
    )
    assume_start = traits.Bool(False, usedefault=True, desc="no markers: EEG starts with volume 0")


class _VolumeTimingOutputSpec(TraitedSpec):
    timing = File(exists=True, desc="npz: onsets (s), how, tr, sfreq, duration, repairs")


class VolumeTiming(SimpleInterface):
    """Onsets of the stored volumes on the EEG clock, from markers (or as given)."""

    input_spec = _VolumeTimingInputSpec
    output_spec = _VolumeTimingOutputSpec

    def _run_interface(self, runtime):
        import numpy as np

        from bids_eeg2fmri.bidsio.events import read_event_markers
        from bids_eeg2fmri.signals import markers as mk
        from bids_eeg2fmri.signals.eeg import read_raw

        inputs = self.inputs
        raw = read_raw(inputs.eeg_file, preload=False)
        sfreq = raw.info["sfreq"]
        duration = raw.n_times / sfreq
        pattern = inputs.volume_marker
        found = [
            mk.matching_onsets(
                raw.annotations.description, raw.annotations.onset - raw.first_time, pattern
            )
        ]
        if isdefined(inputs.events_tsv):
            found.append(
                mk.matching_onsets(*read_event_markers(inputs.events_tsv, warn=False), pattern)
            )
        tr = inputs.tr if isdefined(inputs.tr) else None
        n_volumes = inputs.n_volumes if inputs.n_volumes >= 0 else None
        try:
            onsets = mk.merge_onsets(*found, tolerance=1.5 / sfreq)
            if onsets.size:
                if tr is None:  # EEG only: the markers tell the TR
                    tr = float(np.median(np.diff(onsets))) if onsets.size > 1 else None
                if tr is None:
                    raise mk.MarkerError("a single volume marker and no TR")
                timing = mk.volume_onsets(
                    onsets, n_volumes=n_volumes, tr=tr, sfreq=sfreq, n_discarded=inputs.n_discarded
                )
            else:
                if n_volumes is None and len(raw.annotations):
                    LOGGER.warning(
                        "%s: none of its %d markers matches --volume-marker %r: EEG only, "
                        "cut on a TR grid from its start",
                        Path(inputs.eeg_file).name,
                        len(raw.annotations),
                        pattern,
                    )
                timing = self._without_markers(tr, n_volumes, duration, pattern)
                tr = timing.onsets[1] - timing.onsets[0] if timing.onsets.size > 1 else tr
            mk.check_coverage(timing, eeg_duration=duration)
        except mk.MarkerError as err:
            raise _named(err, inputs.eeg_file) from None
        for note in timing.repairs:  # they change what the model sees: warnings
            LOGGER.warning("%s: %s", Path(inputs.eeg_file).name, note)
        out = Path(runtime.cwd) / "timing.npz"
        np.savez(
            out,
            onsets=timing.onsets,
            how=timing.how.astype(str),
            tr=tr,
            sfreq=sfreq,
            duration=duration,
            repairs=np.asarray(timing.repairs, dtype=str),
            scan_onsets=timing.scan_onsets,
        )
        self._results["timing"] = str(out)
        return runtime

    def _without_markers(self, tr, n_volumes, duration, pattern):
        from bids_eeg2fmri.signals import markers as mk

        inputs = self.inputs
        given = isdefined(inputs.first_volume_onset)
        if not given and not inputs.assume_start and n_volumes is not None:  # a BOLD run
            raise mk.MarkerError(
                f"no volume markers match {pattern!r}; pass --volume-marker, "
                "--first-volume-onset or --assume-eeg-starts-at-first-volume"
            )
        tr = tr or (inputs.eeg_only_tr if isdefined(inputs.eeg_only_tr) else None)
        if tr is None:
            raise mk.MarkerError("no markers and no TR: pass --eeg-only-tr for EEG-only runs")
        first = inputs.first_volume_onset if given else 0.0
        if n_volumes is None:
            n_volumes = int((duration - first) // tr) + 1
        return mk.grid_onsets(
            first, n_volumes=n_volumes, tr=tr, how=mk.GIVEN if given else mk.ASSUMED
        )


# ----------------------------------------------------------------------------- features
class _EEGFeaturesInputSpec(BaseInterfaceInputSpec):
    eeg_file = File(exists=True, mandatory=True, desc="EEG recording")
    source_file = File(exists=True, desc="the run's EEG in BIDS_DIR (named in messages)")
    channels_tsv = File(exists=True, desc="the recording's _channels.tsv (channel types)")
    electrodes_tsv = File(exists=True, desc="the recording's _electrodes.tsv (positions)")
    coordsystem_json = File(exists=True, desc="the _coordsystem.json of electrodes_tsv")
    timing = File(exists=True, mandatory=True, desc="output of VolumeTiming")
    channels = traits.List(traits.Str, mandatory=True, desc="the model's EEG channels, in order")
    model_positions = traits.Dict(desc="the model card's channel_positions")
    min_channel_fraction = traits.Float(
        0.75, usedefault=True, desc="fewest placed recording channels, per model channel"
    )
    n_windows = traits.Int(10, usedefault=True, desc="TR-long windows per model input")
    max_freq = traits.Float(62.5, usedefault=True, desc="highest frequency (Hz, excluded)")
    l_freq = traits.Float(desc="high-pass edge (Hz) of an optional FIR filter")
    h_freq = traits.Float(desc="low-pass edge (Hz) of an optional FIR filter")


class _EEGFeaturesOutputSpec(TraitedSpec):
    features = File(exists=True, desc="npy, float32 (n_volumes + W - 1, channels, freqs)")
    info = File(exists=True, desc="json: channels, interpolated, frequencies, valid volumes")


class EEGFeatures(SimpleInterface):
    """Standardised log spectra of the TR-long windows before each volume."""

    input_spec = _EEGFeaturesInputSpec
    output_spec = _EEGFeaturesOutputSpec

    def _run_interface(self, runtime):
        import numpy as np

        from bids_eeg2fmri.signals import eeg as eeg_mod
        from bids_eeg2fmri.signals import features as feat

        inputs = self.inputs
        timing = np.load(inputs.timing)
        tr = float(timing["tr"])
        # the user's recording (eeg_file may be its corrected or downsampled working copy)
        source = inputs.source_file if isdefined(inputs.source_file) else inputs.eeg_file
        try:
            raw = eeg_mod.read_raw(inputs.eeg_file)
            sfreq = float(raw.info["sfreq"])  # the file read (it may have been downsampled)
            # types and units as the user's file gives them: a working copy (BrainVision)
            # types every channel EEG in volts
            header = raw if source == inputs.eeg_file else eeg_mod.read_raw(source, preload=False)
            tsv = (
                eeg_mod.read_channel_types(inputs.channels_tsv)
                if isdefined(inputs.channels_tsv)
                else None
            )
            file_types = header.get_channel_types()
            names = eeg_mod.eeg_channels(header.ch_names, file_types, tsv)
        except eeg_mod.EEGError as err:
            raise _named(err, source) from None
        n_channels_file, duration_s = len(header.ch_names), round(raw.n_times / sfreq, 3)
        by_tsv, by_file = eeg_mod.named_non_eeg(header.ch_names, file_types, tsv)
        for where, misnamed in ((inputs.channels_tsv, by_tsv), (source, by_file)):
            if misnamed:
                LOGGER.warning(
                    "%s: %s typed EEG, but the name says otherwise (ECG, EOG, EMG, EXG, "
                    "accelerometer...): left out of the model's channels",
                    where,
                    ", ".join(misnamed),
                )
        if isdefined(inputs.channels_tsv):
            bad = set(eeg_mod.bad_channels(inputs.channels_tsv))
            dropped = [n for n in names if n in bad]
            names = _left_out(names, dropped, inputs.channels_tsv, "have status bad")
        unitless = eeg_mod.non_voltage_channels(header, names)
        shown = [f"{n}: unit {u!r}" for n, u in unitless.items()]
        names = _left_out(names, list(unitless), source, "are not recorded in volts", shown)
        flat = eeg_mod.flat_channels(raw, names, label=str(source))  # the error names it
        names = _left_out(names, flat, source, "are flat")
        try:
            positions, model_positions = _positions(inputs)
            data, mapping = eeg_mod.model_channel_data(
                raw,
                names,
                inputs.channels,
                min_fraction=inputs.min_channel_fraction,
                positions=positions,
                model_positions=model_positions,
            )
        except eeg_mod.EEGError as err:
            raise _named(err, source) from None
        del raw  # the model channels are in ``data``
        interpolated = _log_mapping(mapping, Path(source).name, len(inputs.channels))
        l_freq = inputs.l_freq if isdefined(inputs.l_freq) else None
        h_freq = inputs.h_freq if isdefined(inputs.h_freq) else None
        if l_freq or h_freq:
            import mne

            data = mne.filter.filter_data(data, sfreq, l_freq, h_freq, verbose="error")
        bins = feat.frequency_bins(tr, sfreq, inputs.max_freq)
        n_samples = feat.window_samples(tr, sfreq)
        if inputs.max_freq > sfreq / 2:
            LOGGER.warning(
                "%s: --max-freq %g Hz is above the EEG's Nyquist frequency (%g Hz): its "
                "spectra stop at %.4g Hz",
                Path(source).name,
                inputs.max_freq,
                sfreq / 2,
                bins[-1] * sfreq / n_samples if bins.size else 0.0,
            )
        ends = feat.window_ends(timing["onsets"], tr=tr, n_windows=inputs.n_windows)
        psd = feat.window_spectra(data, sfreq, ends, n_samples=n_samples, bins=bins)
        features = feat.standardize(psd)
        mean_psd = feat.mean_spectrum(psd)
        del psd
        _, valid = feat.model_inputs(features, inputs.n_windows)
        out = Path(runtime.cwd) / "features.npy"
        np.save(out, features)
        info = {
            "channels": list(inputs.channels),
            "interpolated": interpolated,
            "interpolation": _mapping_info(mapping),
            "channel_positions": _channel_positions(inputs.channels, model_positions, positions),
            "flat": flat,
            "frequencies": (bins * sfreq / n_samples).round(6).tolist(),
            "n_windows": inputs.n_windows,
            "window_samples": n_samples,
            "sfreq": sfreq,
            "tr": tr,
            "valid": valid.tolist(),
            # what the standardisation removes, for the participant's EEG views
            "log_psd_mean": np.log10(mean_psd).round(5).tolist(),
            "n_channels_file": n_channels_file,
            "duration_s": duration_s,
        }
        (Path(runtime.cwd) / "features.json").write_text(json.dumps(info))
        self._results["features"] = str(out)
        self._results["info"] = str(Path(runtime.cwd) / "features.json")
        return runtime


# ----------------------------------------------------------------------------- BOLD
class _PrepareBoldInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True, desc="BOLD run (NIfTI)")
    tr = traits.Float(desc="repetition time from the sidecar (wins over the header)")
    dummy_scans = traits.Int(0, usedefault=True, desc="leading stored volumes to drop")
    model_grid = traits.Tuple(traits.Int, traits.Int, traits.Int, mandatory=True, desc="model grid")
    high_pass_s = traits.Float(desc="remove drifts slower than this (s; DCT basis); 0: keep")


class _PrepareBoldOutputSpec(TraitedSpec):
    bold = File(exists=True, desc="z-scored BOLD on the model grid (float32 NIfTI, uncompressed)")
    mask = File(exists=True, desc="brain mask on the model grid")
    mean = File(exists=True, desc="voxel means on the model grid (source units)")
    std = File(exists=True, desc="voxel standard deviations on the model grid")
    info = File(exists=True, desc="json: native shape and affine, model affine, volumes, TR")


class PrepareBold(SimpleInterface):
    """BOLD on the model grid, masked and z-scored, with the way back saved."""

    input_spec = _PrepareBoldInputSpec
    output_spec = _PrepareBoldOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np

        from bids_eeg2fmri.signals import bold as bold_mod

        inputs = self.inputs
        name = Path(inputs.bold_file).name
        try:
            img = nib.load(inputs.bold_file)
            bold_mod.check_bold_dtype(img.get_data_dtype(), name=name)
            data = np.asarray(img.dataobj, dtype=np.float32)
        except bold_mod.BoldError:
            raise
        except Exception as err:  # noqa: BLE001 - nibabel raises many types
            reason = (str(err).splitlines() or [type(err).__name__])[0].removesuffix(" from ")
            raise bold_mod.BoldError(
                f"{name}: cannot read the BOLD, truncated or corrupt ({reason.strip()}) "
                "(a complete NIfTI image)"
            ) from None
        bold_mod.check_bold(data, name=name)
        # the pairing chose the TR (the sidecar's, else the header's) and warned if they differ
        tr = inputs.tr if isdefined(inputs.tr) else None
        tr_header = bold_mod.header_tr(img.header.get_zooms(), img.header.get_xyzt_units()[1])
        data = data[..., inputs.dummy_scans :]
        grid = tuple(inputs.model_grid)
        model_affine = bold_mod.model_grid_affine(img.affine, data.shape, grid)
        on_grid = bold_mod.resample(data, img.affine, model_affine, grid)
        del data  # on the model grid now (the same array when the grids agree)
        if isdefined(inputs.high_pass_s) and inputs.high_pass_s > 0:
            bold_mod.remove_drift(on_grid, tr or tr_header, inputs.high_pass_s)
        mean_img = on_grid.mean(axis=-1, dtype=np.float64)
        mask = bold_mod.brain_mask(mean_img, model_affine, name=name)
        z, mean, std = bold_mod.normalize(on_grid, mask)
        cwd = Path(runtime.cwd)
        # the BOLD uncompressed, so that later steps can memory-map it
        for key, array in (
            ("bold", z),
            ("mask", mask.astype(np.uint8)),
            ("mean", mean),
            ("std", std),
        ):
            path = cwd / (f"{key}.nii" if key == "bold" else f"{key}.nii.gz")
            nib.Nifti1Image(array, model_affine).to_filename(path)
            self._results[key] = str(path)
        info = {
            "native_shape": list(img.shape[:3]),
            "native_affine": img.affine.tolist(),
            "model_affine": model_affine.tolist(),
            "n_volumes": int(z.shape[-1]),
            "tr": tr or tr_header,
        }
        (cwd / "bold.json").write_text(json.dumps(info))
        self._results["info"] = str(cwd / "bold.json")
        return runtime


# ----------------------------------------------------------------------------- outputs
class _VolumeEventsInputSpec(BaseInterfaceInputSpec):
    timing = File(exists=True, mandatory=True, desc="output of VolumeTiming")
    # a folder and a relative path, not the file's path: nipype would hash an existing file
    # by its time stamp, and writing it would then invalidate the cache of this node
    output_dir = traits.Str(mandatory=True, desc="root of the derivative dataset")
    relative_path = traits.Str(mandatory=True, desc="the _desc-volumes_events.tsv below it")
    sources = traits.List(traits.Str, desc="BIDS URIs of the files the onsets come from")
    ready = traits.List(File(exists=True), desc="outputs that must exist first (run complete)")


class _VolumeEventsOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the written events.tsv")


class VolumeEvents(SimpleInterface):
    """Write the aligned volume onsets as a BIDS events file (atomically)."""

    input_spec = _VolumeEventsInputSpec
    output_spec = _VolumeEventsOutputSpec

    def _run_interface(self, runtime):
        import numpy as np

        from bids_eeg2fmri.bidsio.events import write_volume_events

        timing = np.load(self.inputs.timing)
        out = write_volume_events(
            Path(self.inputs.output_dir) / self.inputs.relative_path,
            onsets=timing["onsets"],
            how=timing["how"],
            tr=float(timing["tr"]),
            sfreq=float(timing["sfreq"]),
            sources=list(self.inputs.sources) if isdefined(self.inputs.sources) else [],
        )
        self._results["out_file"] = str(out)
        return runtime
