"""``python -m bids_eeg2fmri``: the BIDS-App entry point."""

from bids_eeg2fmri.cli.run import main

if __name__ == "__main__":
    raise SystemExit(main())
