"""Runners: procedures that drive systems over data (the representation probe).

They sit above `systems/` and may use everything below it.
"""
