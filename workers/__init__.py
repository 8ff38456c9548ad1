"""The worker side (`python -m workers`): reads the inbox stream, fans each event out to the
destinations its rules name, sends from one lane per destination, runs timers (probes of paused
destinations, dead-letter expiry), and runs RQ jobs for announcements. Imports config,
relay.domain and relay.store, never relay.web (Flask) or relay.cli."""
