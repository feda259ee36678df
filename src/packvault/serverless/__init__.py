"""Packvault serverless layer (see docs/architecture.md)."""
