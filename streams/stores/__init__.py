"""Faust table stores of FlowForge, one store per module (selected by ``store="NAME://"``)."""
