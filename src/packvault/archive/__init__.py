"""Packvault archive layer (see docs/architecture.md)."""
