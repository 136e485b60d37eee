"""Checks of EEG files before and while MNE reads them: what MNE would read wrongly or
only mention in a warning it is told to hide.

Errors are :class:`EEGError` (a :class:`~bids_eeg2fmri.errors.DataError`, exit 65) with one
line ``<file>: <what is wrong> (<what was expected>)``; what the app works around is
logged once as a WARNING naming the file and what was done.
"""

from __future__ import annotations

import locale
import logging
import math
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bids_eeg2fmri.errors import DataError

LOGGER = logging.getLogger("bids_eeg2fmri.signals.eeg")

#: Bytes per value of the BrainVision binary formats.
BINARY_BYTES = {"INT_16": 2, "UINT_16": 2, "INT_32": 4, "IEEE_FLOAT_32": 4}

#: MNE warnings not worth a line: filter settings and (often de-identified) subject or
#: date fields of the header, which do not change the samples.
BENIGN_MNE_WARNINGS = re.compile(
    r"contain different (?:high|low)pass filters|Online software filter detected|"
    r"Highpass cutoff frequency .* is greater than lowpass|Invalid patient information|"
    r"Invalid measurement date",
    re.IGNORECASE,
)
#: MNE warnings this module replaces with its own wording (or its own error).
HANDLED_MNE_WARNINGS = re.compile(r"MarkerFile .* not found|n_channels override", re.IGNORECASE)

_WARNED: set[str] = set()


class EEGError(DataError, ValueError):
    """The EEG recording cannot be used (the message names the file and the problem)."""


def warn_once(message: str) -> None:
    """Log ``message`` as a WARNING once per process (recordings are read several times)."""
    if message not in _WARNED:
        _WARNED.add(message)
        LOGGER.warning("%s", message)


# ----------------------------------------------------------------------------- BrainVision
@dataclass(frozen=True)
class BrainVisionHeader:
    """What a ``.vhdr`` says about its files and the layout of its samples."""

    path: Path
    common: dict[str, str] = field(default_factory=dict)
    binary_format: str | None = None
    n_listed: int = 0  # entries ``Ch<n>=`` in [Channel Infos]
    #: (key, name, resolution) of each ``Ch<n>=<name>,<ref>,<resolution>,...`` entry
    channels: tuple[tuple[str, str, str], ...] = ()

    def file(self, key: str) -> Path | None:
        """The file named by ``DataFile`` or ``MarkerFile`` (beside the header), or None."""
        name = self.common.get(key.lower())
        return self.path.parent / name if name else None


def read_brainvision_header(path: Path) -> BrainVisionHeader:
    """The keys of a ``.vhdr`` that matter here (lines ``key=value`` under ``[section]``;
    keys before any section count as ``[Common Infos]``)."""
    path = Path(path)
    section, common, binary, channels = "common infos", {}, None, []
    text = path.read_text(encoding="utf-8", errors="replace")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if section == "common infos":
            common[key] = value
        elif section == "binary infos" and key == "binaryformat":
            binary = value.upper()
        elif section == "channel infos" and re.fullmatch(r"ch\d+", key):
            fields = [f.strip().replace("\\1", ",") for f in value.split(",")]
            resolution = fields[2] if len(fields) > 2 else ""
            channels.append((f"Ch{key[2:]}", fields[0], resolution))
    return BrainVisionHeader(path, common, binary, len(channels), tuple(channels))


def check_brainvision(vhdr: Path) -> None:
    """Refuse a BrainVision recording MNE would read wrongly; warn about a missing marker file.

    Raises
    ------
    EEGError
        No ``DataFile``, or a missing data file; a channel count that ``[Channel Infos]`` or
        the data file's size contradicts (multiplexed binary data: the size must be a whole
        number of samples of ``NumberOfChannels`` values); a missing marker file without an
        ``_events.tsv`` beside the recording.
    """
    header = read_brainvision_header(vhdr)
    data = header.file("DataFile")
    if data is None:
        raise EEGError(f"{vhdr}: no DataFile in the header (the name of its binary data file)")
    if not data.is_file():
        sibling = Path(vhdr).with_suffix(".eeg")
        hint = f"; {sibling.name} is beside it: correct DataFile=" if sibling.is_file() else ""
        raise EEGError(
            f"{vhdr}: its data file {data.name!r} is missing (expected at {data}, as the "
            f"header's DataFile says{hint})"
        )
    _check_numbers(header)
    _check_channel_count(header, data)
    _check_marker_file(header, data)


def _check_numbers(header: BrainVisionHeader) -> None:
    """The keys MNE would fail on with a bare ``int()``/``float()`` error or a division by
    zero, and channel names it would mangle: one line naming the key."""
    vhdr, common = header.path, header.common
    count = common.get("numberofchannels")
    if count is not None and not (count.isdigit() and int(count) > 0):
        raise EEGError(f"{vhdr}: NumberOfChannels={count} (a positive whole number expected)")
    interval = common.get("samplinginterval")
    if interval is not None and not _positive(interval):
        raise EEGError(
            f"{vhdr}: SamplingInterval={interval} (a positive number of microseconds expected)"
        )
    seen: dict[str, str] = {}
    for key, name, resolution in header.channels:
        if not name:
            raise EEGError(f"{vhdr}: {key} has no channel name (a name per channel expected)")
        if name in seen:
            raise EEGError(
                f"{vhdr}: channel name {name!r} is used by {seen[name]} and {key} (unique "
                "channel names expected)"
            )
        seen[name] = key
        if resolution and (not _number(resolution) or float(resolution) == 0):
            raise EEGError(
                f"{vhdr}: {key}={name}: resolution {resolution!r} (a non-zero number of units "
                "per bit expected, or none for 1)"
            )


def _number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _positive(text: str) -> bool:
    return _number(text) and float(text) > 0


def _check_channel_count(header: BrainVisionHeader, data: Path) -> None:
    common, vhdr = header.common, header.path
    multiplexed = common.get("dataformat", "BINARY").upper() == "BINARY" and (
        common.get("dataorientation", "MULTIPLEXED").upper() == "MULTIPLEXED"
    )
    try:
        n_channels = int(common["numberofchannels"])
    except (KeyError, ValueError):
        return  # MNE says what is wrong
    if not multiplexed or n_channels <= 0:
        return  # other layouts are MNE's to check
    if header.n_listed != n_channels:
        raise EEGError(
            f"{vhdr}: NumberOfChannels={n_channels} but [Channel Infos] lists "
            f"{header.n_listed} channel(s) (one Ch<n>= line per channel expected)"
        )
    width = BINARY_BYTES.get(header.binary_format or "")
    if width is None:
        return
    size, frame = data.stat().st_size, n_channels * width
    if size % frame:
        raise EEGError(
            f"{vhdr}: its data file {data.name} holds {size} bytes, not a whole number of "
            f"samples ({n_channels} channels x {width} bytes of {header.binary_format} = "
            f"{frame} bytes per sample expected: a wrong channel count or a truncated file)"
        )


def _check_marker_file(header: BrainVisionHeader, data: Path) -> None:
    vhdr, markers = header.path, header.file("MarkerFile")
    if markers is None:
        return
    if not markers.is_file():
        sibling = vhdr.with_suffix(".vmrk")
        if sibling.is_file():  # a stale name (after a rename): MNE reads the sibling
            warn_once(
                f"{markers}: missing (named by {vhdr.name}): the markers of {sibling.name} "
                "beside it are read instead"
            )
            return
        events = bids_events_tsv(vhdr)
        if events is None:
            raise EEGError(
                f"{vhdr}: its marker file {markers.name!r} is missing and there is no "
                "_events.tsv beside it (the volume markers are expected in one of them)"
            )
        warn_once(
            f"{markers}: missing (named by {vhdr.name}): the recording's markers are not "
            f"read; the markers of {events.name} are used"
        )
        return
    named = read_brainvision_header(markers).file("DataFile")
    if named is not None and named.name != data.name:
        warn_once(
            f"{markers}: names data file {named.name!r} but its header {vhdr.name} names "
            f"{data.name!r}: using the header's"
        )
    _check_marker_positions(markers)


def _check_marker_positions(markers: Path) -> None:
    """Each ``Mk<n>=<type>,<description>,<position>,...`` entry of [Marker Infos] needs a
    whole-number position (MNE fails on others with an error naming the header)."""
    section = ""
    for line in markers.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            continue
        key, sep, value = line.partition("=")
        if section != "marker infos" or not sep or not re.fullmatch(r"mk\d+", key.strip(), re.I):
            continue
        fields = value.split(",")
        position = fields[2].strip() if len(fields) > 2 else ""
        if not position.isdigit():
            raise EEGError(
                f"{markers}: {key.strip()}: position {position!r} is not a sample number "
                "(a whole number >= 1 expected)"
            )


@contextmanager
def readable_markers(vhdr: Path) -> Iterator[Path]:
    """The header MNE should read: ``vhdr`` itself, or, when its marker file is not text in
    the locale's encoding (an ``ANSI`` marker file with an accented comment: MNE opens it
    with that encoding to find the date and fails), a copy of the header beside a UTF-8
    copy of the marker file, in a temporary folder (the data file is read where it is)."""
    header = read_brainvision_header(vhdr)
    markers, data = header.file("MarkerFile"), header.file("DataFile")
    if markers is None or data is None or not markers.is_file():
        yield vhdr
        return
    raw = markers.read_bytes()
    try:
        raw.decode(locale.getpreferredencoding(False))
    except (UnicodeDecodeError, LookupError):
        pass
    else:
        yield vhdr
        return
    found = re.search(rb"Codepage=(\S+)", raw, re.IGNORECASE)
    codepage = found.group(1).decode("ascii", "replace") if found else "latin-1"
    codepage = {"ANSI": "cp1252", "UTF-8": "latin-1"}.get(codepage.upper(), codepage)
    try:
        text = raw.decode(codepage)
    except (UnicodeDecodeError, LookupError):
        text = raw.decode("latin-1")
    warn_once(
        f"{markers}: not {locale.getpreferredencoding(False)} text, which MNE needs: read "
        f"from a UTF-8 copy (decoded as {codepage})"
    )
    with tempfile.TemporaryDirectory(prefix="bids-eeg2fmri-vmrk-") as folder:
        copy = Path(folder) / vhdr.name
        (Path(folder) / "markers.vmrk").write_text(
            re.sub(r"(?im)^Codepage=.*$", "Codepage=UTF-8", text), encoding="utf-8"
        )
        lines = vhdr.read_bytes().splitlines(keepends=True)
        for i, line in enumerate(lines):
            key = line.split(b"=", 1)[0].strip().lower()
            if key == b"markerfile":
                lines[i] = b"MarkerFile=markers.vmrk\n"
            elif key == b"datafile":
                lines[i] = b"DataFile=" + str(data.resolve()).encode("utf-8") + b"\n"
        copy.write_bytes(b"".join(lines))
        yield copy


def check_eeglab_data(raw, path: Path) -> None:
    """An EEGLAB recording whose samples are in a separate ``.fdt`` (float32, read only
    when needed) must hold all of them: MNE finds a short one only when it reads it.

    Raises
    ------
    EEGError
        The ``.fdt`` is shorter than the header's channels x samples.
    """
    data = Path(raw.filenames[0]) if raw.filenames and raw.filenames[0] else None
    if data is None or data.suffix.lower() != ".fdt":
        return  # the samples are inside the .set: MNE has read them
    n_channels = int(raw.info["nchan"])
    expected = n_channels * raw.n_times * 4
    size = data.stat().st_size
    if size < expected:
        raise EEGError(
            f"{path}: its data file {data.name} holds {size} bytes, fewer than its "
            f"{n_channels} channels x {raw.n_times} samples (x 4 bytes = {expected} bytes "
            "expected: a truncated or wrong .fdt)"
        )


def bids_events_tsv(eeg: Path) -> Path | None:
    """The ``_events.tsv`` beside a BIDS ``..._eeg.<ext>`` recording, if there is one."""
    stem = Path(eeg).name.rsplit(".", 1)[0]
    if not stem.endswith("_eeg"):
        return None
    events = Path(eeg).with_name(stem[: -len("_eeg")] + "_events.tsv")
    return events if events.is_file() else None


# ----------------------------------------------------------------------------- MNE warnings
@contextmanager
def mne_warnings(path: Path) -> Iterator[None]:
    """Run an MNE reader with its warnings caught; those that matter are logged (once)
    as ``<file>: MNE: <its warning>``. The reader must be called with
    ``verbose="warning"`` (with ``"error"`` MNE does not emit them)."""
    mne_logger = logging.getLogger("mne")  # it would also print them, unnamed, to stdout
    mute = _LevelFilter(logging.WARNING)
    mne_logger.addFilter(mute)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        mne_logger.removeFilter(mute)
    for message in relevant_mne_warnings([str(w.message) for w in caught]):
        warn_once(f"{path}: read by MNE, which warns: {message}")


class _LevelFilter(logging.Filter):
    """Drops the records of one level."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno != self.level


def relevant_mne_warnings(messages: list[str]) -> list[str]:
    """The messages worth a WARNING: not benign, not handled here, each once."""
    keep: list[str] = []
    for message in messages:
        message = " ".join(message.split())
        if BENIGN_MNE_WARNINGS.search(message) or HANDLED_MNE_WARNINGS.search(message):
            continue
        if message not in keep:
            keep.append(message)
    return keep


def read_or_fail(reader: Callable, path: Path, *, named: Path | None = None, **kwargs):
    """``reader(path, **kwargs)`` with MNE's warnings surfaced and any failure as one
    :class:`EEGError` line naming the file (``named``, when ``path`` is a stand-in)."""
    named = path if named is None else named
    fmt = {".vhdr": "BrainVision", ".edf": "EDF", ".bdf": "BDF", ".set": "EEGLAB"}.get(
        Path(path).suffix, "EEG"
    )
    try:
        with mne_warnings(named):
            return reader(path, verbose="warning", **kwargs)
    except Exception as err:  # noqa: BLE001 - readers raise many types for bad files
        reason = " ".join(str(err).split()) or "no message"
        raise EEGError(
            f"{named}: cannot read the EEG: {type(err).__name__}: {reason} (a complete, "
            f"readable {fmt} file expected)"
        ) from None
