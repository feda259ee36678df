"""Shared fixtures: real S3 servers (moto, LocalStack) come from tests/support/s3servers.py."""

pytest_plugins = ["tests.support.s3servers", "tests.support.cli"]
