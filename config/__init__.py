"""Settings from the environment and the relay's YAML config: parsed and validated in one place.

Nothing here imports the rest of the project (`relay` and `workers` import this package).
"""
