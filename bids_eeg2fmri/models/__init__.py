"""The synthesizer in TensorFlow / Keras 3: layers, architecture and presets, training,
synthesis. ``layers`` imports Keras when imported; the other modules import TensorFlow
inside the functions that need it, and only the model code paths of the CLI reach them."""
