"""Development tooling: ./dev up, its local sinks and private Redis. Not part of the installed package."""
