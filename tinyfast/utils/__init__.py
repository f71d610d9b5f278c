"""Helpers shared by every layer: the command-line wrapper (`tinyfast.utils.cli`)."""
