"""Helpers that every layer may use: they import nothing else of tinyfast."""
