"""bids-eeg2fmri: synthesize fMRI from EEG, as a BIDS-App.

Importing the package is cheap on purpose: heavy libraries (TensorFlow, MNE, pybids,
nipype) are imported only inside the functions that need them, so that ``--help`` and
``--version`` answer at once.
"""

__version__ = "0.1.0"

#: Where the code lives; recorded in dataset_description.json (GeneratedBy.CodeURL).
CODE_URL = "https://github.com/bids-eeg2fmri/bids-eeg2fmri"

__all__ = ["CODE_URL", "__version__"]
