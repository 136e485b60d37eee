"""Thin nipype interfaces of the MR artifact correction: correct (into the node's folder),
then publish the derivatives once the run is complete."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_eeg2fmri.workflows.interfaces import _named

LOGGER = logging.getLogger("bids_eeg2fmri")


class _MRCorrectionInputSpec(BaseInterfaceInputSpec):
    eeg_file = File(exists=True, mandatory=True, desc="EEG recording (any BIDS EEG format)")
    eeg_json = File(exists=True, desc="the recording's _eeg.json (copied into the output's)")
    channels_tsv = File(exists=True, desc="the recording's _channels.tsv (channel types)")
    timing = File(exists=True, mandatory=True, desc="output of VolumeTiming")
    run_name = traits.Str(mandatory=True, desc="the run's entities, e.g. sub-01_task-rest")
    mode = traits.Enum("auto", "none", "gradient", "gradient+pulse", usedefault=True, desc="what")
    ecg_channel = traits.Str(desc="name of the ECG channel (default: typed ECG, else by name)")
    slice_marker = traits.Str(desc="regular expression of slice markers' descriptions")
    slice_timing = traits.List(traits.Float, desc="the BOLD's SliceTiming (s)")
    clean_eeg = File(exists=True, desc="the EEG without artifacts (simulated data's truth)")
    sfreq = traits.Float(250.0, usedefault=True, desc="rate of the output (Hz, at most)")
    threads = traits.Int(1, usedefault=True, nohash=True, desc="threads (never changes results)")


class _MRCorrectionOutputSpec(TraitedSpec):
    eeg_file = File(exists=True, desc="the EEG the features read (corrected or as given)")
    info = File(exists=True, desc="json: what was detected, corrected and measured")
    outputs = traits.List(File(exists=True), desc="files to publish (empty: nothing done)")


class MRCorrection(SimpleInterface):
    """Detect and remove gradient and pulse artifacts; downsample high-rate recordings."""

    input_spec = _MRCorrectionInputSpec
    output_spec = _MRCorrectionOutputSpec

    def _run_interface(self, runtime):
        import numpy as np

        from bids_eeg2fmri.signals import eeg as eeg_mod
        from bids_eeg2fmri.signals import markers as mk
        from bids_eeg2fmri.signals import mr_correction as mr

        inputs, cwd = self.inputs, Path(runtime.cwd)
        name = Path(inputs.eeg_file).name
        raw = eeg_mod.read_raw(inputs.eeg_file, preload=False)
        sfreq = float(raw.info["sfreq"])
        timing = np.load(inputs.timing)
        tr = float(timing["tr"])
        scan = timing["scan_onsets"] if "scan_onsets" in timing else np.empty(0)
        tsv = (
            eeg_mod.read_channel_types(inputs.channels_tsv) if _given(inputs.channels_tsv) else None
        )
        types = _bids_types(raw, tsv)
        eeg_picks = [
            i
            for i, n in enumerate(raw.ch_names)
            if n in set(eeg_mod.eeg_channels(raw.ch_names, raw.get_channel_types(), tsv))
        ]
        try:
            ecg_pick = _ecg_pick(
                raw.ch_names, types, inputs.ecg_channel if _given(inputs.ecg_channel) else None
            )
            picks = eeg_picks + ([ecg_pick] if ecg_pick is not None else [])
            eeg_mod.check_finite(raw, picks, label=str(inputs.eeg_file))
            annotations = raw.annotations
            slices = None
            if _given(inputs.slice_marker):
                found = mk.matching_onsets(
                    annotations.description, annotations.onset - raw.first_time, inputs.slice_marker
                )
                slices = np.round(found * sfreq).astype(np.int64) if found.size else None
                if slices is not None and scan.size == 0:
                    raise mr.MRArtifactError(
                        f"{found.size} slice markers but no volume markers: the volumes "
                        "cannot be located"
                    )
            clean = (
                eeg_mod.read_raw(inputs.clean_eeg, preload=False)
                if _given(inputs.clean_eeg)
                else None
            )
            settings = mr.MRSettings(
                mode=inputs.mode, sfreq=inputs.sfreq, threads=max(1, inputs.threads)
            )
            result = mr.correct_recording(
                raw,
                markers=np.round(scan * sfreq).astype(np.int64),
                tr=tr,
                eeg_picks=eeg_picks,
                ecg_pick=ecg_pick,
                settings=settings,
                slice_markers=slices,
                slice_frequency=_slice_frequency(inputs.slice_timing),
                clean=clean,
                progress=lambda text: LOGGER.info("%s: %s", name, text),
            )
        except (mr.MRArtifactError, eeg_mod.EEGError) as err:
            raise _named(err, inputs.eeg_file) from None
        except np.linalg.LinAlgError:
            # the gradient step corrects every channel: NaN in a non-EEG one (checked only
            # now, so that it does not stop recordings with nothing to correct) is the cause
            eeg_mod.check_finite(raw, range(len(raw.ch_names)), label=str(inputs.eeg_file))
            raise
        record = _record(result, settings, tr)
        for note in _warnings(result):
            LOGGER.warning("%s: %s", name, note)
            record.setdefault("Warnings", []).append(note)
        LOGGER.info("%s: %s", name, record["Decision"])
        self._results["outputs"] = []
        eeg_out = Path(inputs.eeg_file)
        if result.corrected or result.sfreq != sfreq:
            label = "mrcorrected" if result.corrected else "downsampled"
            eeg_out = cwd / f"{inputs.run_name}_desc-{label}_eeg.vhdr"
            _write_eeg(eeg_out, result, raw)
        if result.corrected:
            self._results["outputs"] = _write_outputs(
                cwd, inputs, result, record, raw, types, eeg_out
            )
        (cwd / "mr.json").write_text(json.dumps(record, indent=1))
        self._results["eeg_file"] = str(eeg_out)
        self._results["info"] = str(cwd / "mr.json")
        return runtime


def _given(value) -> bool:
    return isdefined(value) and value not in ("", None)


def _bids_types(raw, tsv) -> list[str]:
    """BIDS channel types: channels.tsv's, else MNE's in upper case."""
    return [
        (tsv or {}).get(n, t.upper())
        for n, t in zip(raw.ch_names, raw.get_channel_types(), strict=True)
    ]


def _ecg_pick(ch_names, types, requested: str | None) -> int | None:
    from bids_eeg2fmri.signals.eeg import EEGError

    if requested is not None:
        if requested not in ch_names:
            raise EEGError(
                f"--ecg-channel {requested}: no such channel (the recording has "
                f"{', '.join(ch_names[:12])}{', ...' if len(ch_names) > 12 else ''})"
            )
        return ch_names.index(requested)
    typed = [i for i, t in enumerate(types) if t in ("ECG", "EKG")]
    if typed:
        return typed[0]
    named = [i for i, n in enumerate(ch_names) if n.upper().rstrip("0123456789") in ("ECG", "EKG")]
    return named[0] if named else None


def _slice_frequency(slice_timing) -> float | None:
    import numpy as np

    if not _given(slice_timing) or len(slice_timing) < 2:
        return None
    times = np.unique(np.round(np.asarray(slice_timing, float), 6))
    if times.size < 2:
        return None
    return float(1.0 / np.median(np.diff(times)))


def _record(result, settings, tr: float) -> dict:
    g, p = result.gradient, result.pulse
    done = [k for k, v in (("gradient", g), ("pulse", p)) if v.get("corrected")]
    if done:
        decision = f"corrected the {' and '.join(done)} artifact(s)"
    else:
        decision = "no MR artifact corrected"
    notes = [f"gradient: {g.get('contrast_db')} dB at the volume harmonics"]
    if "skipped" in p:
        notes.append(f"pulse: {p['skipped']}")
    elif "contrast" in p:
        notes.append(f"pulse: beat-locked/random {p['contrast']}")
    return {
        "Decision": f"{decision} ({'; '.join(notes)}); --mr-correction {settings.mode}",
        "Gradient": g,
        "Pulse": p,
        "Settings": settings.record(),
        "RepetitionTime": tr,
        "SamplingFrequency": result.sfreq,
    }


def _warnings(result) -> list[str]:
    import numpy as np

    notes = list(result.warnings)
    after = result.channels.get("volume_contrast_after_db")
    if result.gradient.get("corrected") and after is not None:
        residual = float(np.nanmedian(after))
        if residual >= 3.0:
            notes.append(
                f"the gradient artifact's residual stays high ({residual:.1f} dB at the volume "
                "harmonics after correction)"
            )
    return notes


def _write_eeg(path: Path, result, raw) -> None:
    from bids_eeg2fmri.bidsio.brainvision import write_brainvision

    annotations = raw.annotations
    write_brainvision(
        path,
        result.data,
        sfreq=result.sfreq,
        ch_names=result.ch_names,
        descriptions=list(annotations.description),
        onsets=list(annotations.onset - raw.first_time),
        meas_date=raw.info["meas_date"],
    )


def _write_outputs(cwd: Path, inputs, result, record, raw, types, eeg_out: Path) -> list[str]:
    """The sidecars, channels, metrics and figures beside the corrected EEG (in ``cwd``)."""
    from bids_eeg2fmri.bidsio import mr_outputs
    from bids_eeg2fmri.bidsio.files import write_json_atomic
    from bids_eeg2fmri.reports import mr_figures

    stem = f"{inputs.run_name}_desc-mrcorrected"
    raw_sidecar = (
        json.loads(Path(inputs.eeg_json).read_text(encoding="utf-8"))
        if _given(inputs.eeg_json)
        else {}
    )
    sidecar = mr_outputs.eeg_sidecar(
        raw_sidecar, sfreq=result.sfreq, anti_alias=result.sfreq / 2, correction=record
    )
    files = [eeg_out.with_suffix(".eeg"), eeg_out.with_suffix(".vmrk"), eeg_out]
    files.append(write_json_atomic(cwd / f"{stem}_eeg.json", sidecar))
    channels = mr_outputs.write_channels(
        cwd / f"{stem}_channels.tsv", ch_names=result.ch_names, ch_types=types
    )
    files += [channels, channels.with_suffix(".json")]
    metrics = mr_outputs.write_metrics(
        cwd / f"{stem}_metrics.tsv",
        ch_names=result.ch_names,
        ch_types=types,
        columns=result.channels,
        run=record,
    )
    files += [metrics, metrics.with_suffix(".json")]
    figures = cwd / "figures"
    qc = result.qc
    tr = float(record["RepetitionTime"])
    spectra = {k: v for k, v in qc["spectra"].items() if k != "freqs"}
    files.append(
        mr_figures.plot_spectra(
            qc["spectra"]["freqs"],
            spectra,
            path=figures / f"{inputs.run_name}_desc-mrspectra_psd.svg",
            tr=tr,
            slice_frequency=_slice_frequency(inputs.slice_timing),
        )
    )
    if "epoch" in qc:
        e = qc["epoch"]
        files.append(
            mr_figures.plot_epoch(
                e["before"],
                e["after"],
                sfreq=e["sfreq"],
                channel=e["channel"],
                path=figures / f"{inputs.run_name}_desc-mrepoch_eeg.svg",
            )
        )
    ecg = result.pulse.get("ecg_channel")
    if ecg and result.r_peaks.size:
        files.append(
            mr_figures.plot_r_peaks(
                result.data[result.ch_names.index(ecg)],
                result.r_peaks,
                sfreq=result.sfreq,
                heart_rate=result.pulse.get("heart_rate_bpm") or float("nan"),
                path=figures / f"{inputs.run_name}_desc-mrpeaks_ecg.svg",
            )
        )
    return [str(f) for f in files]


# ----------------------------------------------------------------------------- publishing
class _MRDerivativesInputSpec(BaseInterfaceInputSpec):
    outputs = traits.List(traits.Str, desc="files of MRCorrection to publish")
    output_dir = traits.Str(mandatory=True, desc="root of the derivative dataset")
    eeg_dir = traits.Str(mandatory=True, desc="the run's eeg/ folder below it")
    figures_dir = traits.Str(mandatory=True, desc="the participant's figures/ folder below it")
    sources = traits.List(traits.Str, desc="BIDS URIs of the raw recording")
    ready = traits.List(File(exists=True), desc="outputs that must exist first (run complete)")


class _MRDerivativesOutputSpec(TraitedSpec):
    published = File(exists=True, desc="json: source -> destination of every copied file")


class MRDerivatives(SimpleInterface):
    """Copy the correction's files into OUTPUT_DIR (each atomically, the header last)."""

    input_spec = _MRDerivativesInputSpec
    output_spec = _MRDerivativesOutputSpec

    def _run_interface(self, runtime):
        root = Path(self.inputs.output_dir)
        pairs = []
        for source in self.inputs.outputs if isdefined(self.inputs.outputs) else []:
            source = Path(source)
            folder = (
                self.inputs.figures_dir if source.parent.name == "figures" else self.inputs.eeg_dir
            )
            pairs.append((str(source), str(root / folder / source.name)))
        sources = list(self.inputs.sources) if isdefined(self.inputs.sources) else []
        publish(pairs, sources=sources)
        out = Path(runtime.cwd) / "published.json"
        out.write_text(json.dumps({"files": pairs, "sources": sources}))
        self._results["published"] = str(out)
        return runtime


def publish(pairs, *, sources) -> None:
    """Copy ``(source, destination)`` pairs atomically, BrainVision headers last; the
    sidecar of the corrected EEG gets ``Sources``."""
    from bids_eeg2fmri.bidsio.files import write_atomic, write_json_atomic

    for source, destination in sorted(pairs, key=lambda p: p[0].endswith(".vhdr")):
        destination = Path(destination)
        if destination.name.endswith("_desc-mrcorrected_eeg.json"):
            sidecar = json.loads(Path(source).read_text(encoding="utf-8"))
            write_json_atomic(destination, {**sidecar, "Sources": sources})
        else:
            write_atomic(
                destination,
                lambda tmp, s=source: shutil.copyfile(s, tmp),
                suffix=destination.suffix,
            )
