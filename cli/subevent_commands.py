"""Placeholder: commands of this area are not written yet."""

COMMANDS: list = []
