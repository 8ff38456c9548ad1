"""The `relay` command line: check-config, sign, send-sample, dead-letters, destinations."""
