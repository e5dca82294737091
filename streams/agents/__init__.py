"""Faust agents, one per module: process (images.raw -> outcomes)."""
