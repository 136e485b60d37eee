"""Loading TensorFlow without its C++ start-up lines on the console.

TensorFlow 2.21 writes a few lines to the process's stderr (file descriptor 2) while its
libraries load, before it reads ``TF_CPP_MIN_LOG_LEVEL`` ("oneDNN custom operations are
on", "Could not find cuda drivers", one "All log messages before absl::InitializeLog()"
per library); after that, the variable silences its C++ log (level 3: errors too, such as
"failed call to cuInit" on a machine without a GPU). :func:`load_tensorflow` imports
TensorFlow and Keras with file descriptor 2 sent to a temporary file, then hands those
lines to the log at DEBUG and writes any other line back to stderr. ``-v`` shows them all.

This module does not import TensorFlow itself (the CLI imports it cheaply).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile

LOGGER = logging.getLogger("bids_eeg2fmri")

#: A line of TensorFlow's C++ log (absl format: severity, date, time, thread, file:line),
#: or absl's note before its initialisation.
_CPP_LINE = re.compile(
    r"^([IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\]|WARNING: All log messages before absl::)"
)


def load_tensorflow(*, verbose: bool) -> None:
    """Import TensorFlow and Keras once, quietly unless ``verbose``.

    Sets ``TF_CPP_MIN_LOG_LEVEL`` to 3 (unless the user set it) when not verbose; the
    environment is read by TensorFlow when it loads, so call this before any TensorFlow
    import in the process. A no-op once TensorFlow is loaded.
    """
    if "tensorflow" in sys.modules:
        return
    if verbose:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401

        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            _replay(captured.read().decode("utf-8", errors="replace"))


def _replay(text: str) -> None:
    """TensorFlow's C++ lines to the log (DEBUG); anything else back to stderr."""
    for line in text.splitlines():
        if _CPP_LINE.match(line):
            LOGGER.debug("TensorFlow: %s", line)
        elif line.strip():
            sys.stderr.write(line + "\n")
