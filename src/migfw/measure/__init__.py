"""Measurement analysis: capture -> probes -> per-trial metrics -> statistics -> figures."""
