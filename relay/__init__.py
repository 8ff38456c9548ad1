"""The relay: the pure domain (relay.domain), the Redis store (relay.store), the web app
(relay.web, the only package that imports Flask) and the command line (relay.cli).

Imports flow one way: config <- relay.domain <- relay.store <- relay.web, relay.cli and workers;
the web app, the CLI and the workers never import each other (tests/test_layout.py).
"""
