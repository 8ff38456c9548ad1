"""The fixtures of the worker tests live in tests/conftest.py: the relay-level tests use them too."""
