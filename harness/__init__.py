"""fallover: pull the cables of an HA cluster under load, and judge what the clients saw."""

__version__ = "0.1.0"
