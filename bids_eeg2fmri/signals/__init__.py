"""Signal processing as plain functions on arrays: EEG, volume markers, features, BOLD.

No nipype, no TensorFlow, no command line: each function takes arrays and explicit
parameters (``sfreq``, ``tr``, ...) and returns arrays.
"""
