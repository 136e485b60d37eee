"""The Classification section of the group report, on classification tables written here
by hand (8 participants, 2 views, 2 repeats): what it says, its figures, the nuisance
check in both cases, and its absence (or a note) without readable tables."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from bids_eeg2fmri.evaluation.classify import auc
from bids_eeg2fmri.reports import figures as fig
from bids_eeg2fmri.reports.html import write_group_report

PARTICIPANTS = [f"{i:02d}" for i in range(1, 9)]
TARGET = {p: int(i < 4) for i, p in enumerate(PARTICIPANTS)}  # 01-04 positive
#: Repeat-averaged probability per view; bandpower misclassifies sub-02 and sub-07.
PROBABILITY = {
    "bandpower": [0.90, 0.30, 0.80, 0.70, 0.20, 0.10, 0.60, 0.40],
    "nuisance": [0.55, 0.45, 0.52, 0.48, 0.51, 0.49, 0.47, 0.53],
}
SIDECAR = {
    "Description": "Classification of participants, one row per view.",
    "Target": {"Column": "group", "Positive": "ADHD", "Negative": ["control"]},
    "Protocol": {
        "Folds": 2,
        "Repeats": 2,
        "InnerFolds": 3,
        "Cs": [0.01, 1.0],
        "Bootstrap": 2000,
        "Permutations": 100,
        "Seed": 0,
        "Classifier": "L2 logistic regression",
    },
}
COLUMNS = (
    "view n_participants n_positive n_features auc auc_ci_low auc_ci_high p_permutation "
    "balanced_accuracy sensitivity specificity delta_auc_vs_bandpower delta_ci_low "
    "delta_ci_high"
).split()


def _write_tables(output: Path, nuisance: tuple[float, float, float]) -> None:
    output.mkdir(parents=True, exist_ok=True)
    rows = [
        ["bandpower", 8, 4, 60, 0.8125, 0.5625, 1.0, 0.0297, 0.75, 0.75, 0.75, 0, 0, 0],
        ["nuisance", 8, 4, 5, *nuisance, 0.4, 0.5, 0.5, 0.5, -0.3, -0.7, "n/a"],
    ]
    text = ["\t".join(COLUMNS)] + ["\t".join(str(v) for v in row) for row in rows]
    (output / "group_desc-classify_metrics.tsv").write_text("\n".join(text) + "\n")
    (output / "group_desc-classify_metrics.json").write_text(json.dumps(SIDECAR))
    lines = ["participant_id\ttarget\tview\trepeat\tfold\tprobability\tprediction"]
    for view, probabilities in PROBABILITY.items():
        for repeat, shift in enumerate((-0.05, 0.05)):  # the mean over repeats: as above
            for j, (pid, p) in enumerate(zip(PARTICIPANTS, probabilities, strict=True)):
                q = p + shift
                lines.append(
                    f"sub-{pid}\t{TARGET[pid]}\t{view}\t{repeat}\t{(j + repeat) % 2}\t{q:.6f}"
                    f"\t{int(q >= 0.5)}"
                )
    (output / "group_desc-classify_predictions.tsv").write_text("\n".join(lines) + "\n")
    (output / "group_desc-classify_predictions.json").write_text(
        json.dumps({**SIDECAR, "Description": "Out-of-fold probabilities."})
    )


def _section(page: Path) -> str:
    """The Classification section's HTML, or '' without one."""
    html = page.read_text(encoding="utf-8")
    found = re.search(r'<section id="classification".*?</section>', html, flags=re.S)
    return found.group(0) if found else ""


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def _images(page: Path, html: str) -> list[Path]:
    return [page.parent / unescape(src) for src in re.findall(r'<img src="([^"]+)"', html)]


@pytest.mark.parametrize(
    ("nuisance", "above"),
    [((0.875, 0.625, 1.0), True), ((0.4375, 0.1875, 0.75), False)],
    ids=["nuisance-above-chance", "nuisance-at-chance"],
)
def test_classification_section(tmp_path, nuisance, above):
    output = tmp_path / "out"
    _write_tables(output, nuisance)
    page = write_group_report(output)
    section = _section(page)
    assert section, "no Classification section"
    assert 'href="#classification"' in page.read_text(encoding="utf-8")  # in the navigation
    text = _text(section)
    assert "could not be" not in text and "missing or unreadable" not in text
    # the target and the protocol
    assert "column 'group': ADHD (the positive class, n = 4) against control (n = 4)" in text
    assert "stratified 2-fold cross-validation repeated 2 times" in text
    assert "participant-wise splits" in text and "L2 logistic regression" in text
    assert "100 permutations" in text and "averaged over the repeats" in text
    # the metrics table: AUC [interval], p, the difference to bandpower; chance in the caption
    assert "0.81 [0.56, 1.00]" in text and "0.0297" in text
    assert f"{nuisance[0]:.2f} [{nuisance[1]:.2f}, {nuisance[2]:.2f}]" in text
    assert "-0.30" in text and "(reference)" in text
    assert "bootstrap intervals over participants" in text and "AUC of 0.5" in text
    # the figures, written and linked
    images = _images(page, section)
    assert {p.name for p in images} == {
        "group_desc-classify_roc.svg",
        "group_desc-classify_probabilities.svg",
    }
    for image in images:
        assert image.is_file() and image.stat().st_size > 1000, image
    roc = (output / "figures" / "group_desc-classify_roc.svg").read_text()
    assert "bandpower: AUC 0.81 [0.56, 1.00]" in roc and "chance" in roc
    # the misclassified participants, by their repeat-averaged probability
    assert "sub-02 (0.30)" in text and "sub-07 (0.60)" in text
    assert "sub-01 (" not in text.split("Misclassified participants")[1]
    # the nuisance check, in the right case
    warning = "The other views may reflect recording differences"
    if above:
        assert "predicts group" in text and warning in text
        strong = re.search(r"<strong>(.*?)</strong>", section, flags=re.S)
        assert strong and warning in strong.group(1)
        assert "line noise, eye movements" in strong.group(1)
    else:
        assert warning not in text and "<strong>" not in section
        assert "does not predict group beyond chance" in text
        assert "does not lie above 0.5" in text


def test_no_classification_section_without_the_tables(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    page = write_group_report(output)
    assert _section(page) == ""
    assert "Classification" not in page.read_text(encoding="utf-8")
    assert not (output / "figures" / "group_desc-classify_roc.svg").exists()


def test_unreadable_or_partial_tables_give_notes(tmp_path):
    output = tmp_path / "out"
    _write_tables(output, (0.5, 0.25, 0.75))
    (output / "group_desc-classify_predictions.tsv").unlink()
    (output / "group_desc-classify_metrics.json").unlink()
    text = _text(_section(write_group_report(output)))
    assert "0.81 [0.56, 1.00]" in text  # the table is still there
    assert "group_desc-classify_predictions.tsv is missing or unreadable" in text
    assert "not named: the sidecar is missing" in text
    # a metrics table that is not a table: a note, the rest of the report intact
    (output / "group_desc-classify_metrics.tsv").write_bytes(b"\x00\x01garbage\n")
    page = write_group_report(output)
    text = _text(_section(page))
    assert "group_desc-classify_metrics.tsv could not be read" in text
    assert 'id="summary"' in page.read_text(encoding="utf-8")


def test_roc_curve_area_is_the_rank_auc():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(7), np.zeros(9)]
    score = np.round(rng.random(16), 1)  # with ties
    fpr, tpr = fig.roc_curve(y, score)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc(y, score))
    assert fig.roc_curve(np.ones(3), [0.1, 0.2, 0.3])[0].size == 0
