"""Packvault chunking layer (see docs/architecture.md)."""
