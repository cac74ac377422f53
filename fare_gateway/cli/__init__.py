"""The gateway's subcommands of `transit`, one module per command group.

Each is declared as an entry point in pyproject.toml (`transit.commands`); `core` holds
what they share.
"""
