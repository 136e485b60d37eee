"""Metrics of synthesized against observed BOLD (plain functions on arrays)."""
