"""The worker side (`python -m workers`): reads the inbox stream, fans each event out to the
destinations its rules name, sends from delivery threads, and runs RQ jobs for retries, lease
sweeps, probes of paused destinations and replays. Imports config, relay.domain and relay.store,
never relay.web (Flask) or relay.cli."""
