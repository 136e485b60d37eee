"""BIDS at the edges: indexing and selection (pybids), validation, derivative writing."""
