"""Plots written as PNG files (matplotlib, Agg backend)."""
