"""Packvault: deduplicating, compressing, encrypting backups into object storage."""

__version__ = "0.1.0"
