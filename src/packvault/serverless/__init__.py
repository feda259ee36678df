"""Packvault as a scheduled serverless job (AWS Lambda): ``packvault.serverless.handler(event, context)``.

The Lambda handler string is ``packvault.serverless.handler`` (module ``packvault.serverless``, function
``handler``), which is what the scheduled-backup module's container image runs; see docs/serverless.md.
"""

from .handler import handler

__all__ = ["handler"]
