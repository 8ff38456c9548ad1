"""`python -m relay.cli ARGS`: the `relay` command where the relay is not installed, as on Heroku,
whose build installs requirements.txt alone (docs/deployment.md#heroku)."""

from relay.cli.main import main

main()
