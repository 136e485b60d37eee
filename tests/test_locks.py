"""Runs sharing a work directory: one participant at a time, refused in one line (75)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import cli

from bids_eeg2fmri.errors import InUseError
from bids_eeg2fmri.workflows.locks import hold_participants


def test_a_participant_is_held_by_one_run_at_a_time(tmp_path):
    with hold_participants(tmp_path, ["01", "02"]):
        with pytest.raises(InUseError, match=r"participant 02 is being processed .*\(pid \d+ on "):
            with hold_participants(tmp_path, ["02", "03"]):
                pass
        with hold_participants(tmp_path, ["03"]):  # another participant: no conflict
            pass
        with hold_participants(tmp_path, ["03"]):  # the refused attempt held nothing
            pass
    with hold_participants(tmp_path, ["01", "02"]):  # released at the end of the block
        pass


def test_a_killed_run_leaves_no_lock_behind(tmp_path):
    code = (
        "import sys, time\n"
        "from bids_eeg2fmri.workflows.locks import hold_participants\n"
        f"with hold_participants({str(tmp_path)!r}, ['01']):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InUseError):
            with hold_participants(tmp_path, ["01"]):
                pass
    finally:
        holder.kill()
        holder.wait()
    with hold_participants(tmp_path, ["01"]):
        pass


def test_the_cli_refuses_a_participant_another_run_holds(tiny, tmp_path, capsys):
    out, work = tmp_path / "out", tmp_path / "work"
    with hold_participants(work, ["01"]):
        code, errors = cli(tiny, out, work, capsys)
    assert code == 75 and len(errors) == 1, errors
    assert f"{work}: participant 01 is being processed by another run" in errors[0], errors[0]
    assert "give this run its own -w" in errors[0]
    assert not list(out.glob("sub-*")), "nothing of the participant written"


def test_a_file_system_without_locks_is_a_warning_not_a_refusal(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level("WARNING", logger="bids_eeg2fmri"):
        with hold_participants(tmp_path, ["01"]):
            pass
    assert "file locks are not supported there (No locks available)" in caplog.text
