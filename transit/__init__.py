"""Shared kernel: settings, wire messages, topics and the `transit` command."""

__version__ = "0.1.0"
