"""Packvault maintenance layer (see docs/architecture.md)."""
