"""The gateway's subcommands of `transit`, one module per command group.

`transit.cli` names each command here lazily; `core` holds what they share.
"""
