"""The synthesizer in TensorFlow / Keras 3: layers, architecture and presets, training,
synthesis. Importing this package imports TensorFlow: only code paths that need a model do."""
