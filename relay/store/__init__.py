"""The shared Redis store: the key layout, the Lua scripts, the inbox, deliveries and their
attempts, dead letters, destination state and the RQ jobs. Used by the web app, the CLI and the
workers alike; imports only config and relay.domain."""
