"""Explaining the synthesizer: layer-wise relevance propagation (``lrp``) from synthesized
volumes or regions back to the EEG inputs, and the regions to explain (``regions``)."""
