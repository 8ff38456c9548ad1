"""The relay's benchmark harness (`./dev bench`): ingest, delivery and footprint, each measured
against a baseline in the same run, on the real Procfile processes. Not part of the test suite.
"""
