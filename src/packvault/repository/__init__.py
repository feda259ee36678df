"""Packvault repository layer (see docs/architecture.md)."""
