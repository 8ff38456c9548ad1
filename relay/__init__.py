"""The web side: receives WMS webhooks, verifies and validates them, and queues them in Redis.

Only relay.app and the blueprints import Flask, so the worker (which imports relay's event model
and inbox) does not load it.
"""
