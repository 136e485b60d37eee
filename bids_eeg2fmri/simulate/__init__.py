"""A simulated simultaneous EEG-fMRI BIDS dataset with known ground truth.

The default for the demo, the tests and the benchmarks: EEG band power of a few sources
drives BOLD in known voxels through a haemodynamic response, and the noiseless BOLD is
kept, so every model can be measured against the best possible prediction.

``generator`` makes the arrays (pure functions), ``writer`` writes them as BIDS,
``cli`` is ``bids-eeg2fmri-simulate``.
"""
