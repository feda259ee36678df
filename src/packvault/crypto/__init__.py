"""Packvault crypto layer (see docs/architecture.md)."""
