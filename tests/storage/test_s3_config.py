"""Parsing of s3:// locations and options (no server needed)."""

from __future__ import annotations

import os

import pytest

from packvault.errors import EXIT_ERROR, InvalidRepositoryURL
from packvault.storage.retry import RetryPolicy
from packvault.storage.s3.config import DEFAULT_MULTIPART_THRESHOLD, parse_s3_url
from packvault.storage.settings import StorageSettings, from_environment


def test_minimal_url():
    s = parse_s3_url("s3://my-bucket")
    assert (s.bucket, s.prefix, s.endpoint, s.data_storage_class) == ("my-bucket", "", None, None)
    assert s.multipart_threshold == DEFAULT_MULTIPART_THRESHOLD


def test_prefix_and_query():
    s = parse_s3_url(
        "s3://b-1/a/b/?endpoint=http://127.0.0.1:9000&region=eu-west-1&profile=p&storage_class=standard_ia"
    )
    assert s.prefix == "a/b"
    assert s.endpoint == "http://127.0.0.1:9000"
    assert s.region == "eu-west-1" and s.profile == "p"
    assert s.data_storage_class == "STANDARD_IA"
    assert s.addressing_style() == "path"  # custom endpoint -> path style


def test_options_win_over_query(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    s = parse_s3_url("s3://bucket/p?region=us-east-1&retry_attempts=3", {"region": "eu-central-1", "profile": None})
    assert s.region == "eu-central-1"
    assert s.retry.attempts == 3
    assert s.addressing_style() == "auto"


def test_env_endpoint_turns_on_path_style(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1234")
    assert parse_s3_url("s3://bucket", settings=from_environment(os.environ)).addressing_style() == "path"
    assert parse_s3_url("s3://bucket?path_style=0", settings=from_environment(os.environ)).addressing_style() == "auto"


def test_retry_bounds_from_environment(monkeypatch):
    monkeypatch.setenv("PACKVAULT_S3_RETRY_ATTEMPTS", "2")
    monkeypatch.setenv("PACKVAULT_S3_RETRY_MAX_SECONDS", "1.5")
    s = parse_s3_url("s3://bucket", settings=from_environment(os.environ))
    assert (s.retry.attempts, s.retry.max_seconds) == (2, 1.5)
    assert (
        parse_s3_url("s3://bucket", {"retry_attempts": "7"}, settings=from_environment(os.environ)).retry.attempts == 7
    )


def test_the_storage_layer_reads_no_environment(monkeypatch):
    """Retry bounds and endpoint variables reach the storage layer only as ``StorageSettings``, read at the
    edge: parsing a location (or building a retry policy) without them ignores the environment."""
    monkeypatch.setenv("PACKVAULT_S3_RETRY_ATTEMPTS", "2")
    monkeypatch.setenv("PACKVAULT_S3_RETRY_MAX_SECONDS", "1.5")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1234")
    s = parse_s3_url("s3://bucket")
    assert (s.retry.attempts, s.retry.max_seconds) == (RetryPolicy().attempts, RetryPolicy().max_seconds)
    assert s.addressing_style() == "auto"
    assert RetryPolicy.from_options(None, None) == RetryPolicy()


def test_settings_from_a_given_environment():
    settings = from_environment(
        {"PACKVAULT_S3_RETRY_ATTEMPTS": "3", "AWS_ENDPOINT_URL": "http://b:2", "AWS_ENDPOINT_URL_S3": "http://a:1"}
    )
    assert settings == StorageSettings(retry_attempts="3", retry_max_seconds=None, s3_endpoint="http://a:1")
    assert from_environment({"AWS_ENDPOINT_URL": "http://b:2"}).s3_endpoint == "http://b:2"
    assert from_environment({}) == StorageSettings()
    s = parse_s3_url("s3://bucket?retry_max_seconds=4", settings=settings)
    assert (s.retry.attempts, s.retry.max_seconds) == (3, 4.0)
    assert s.endpoint_label() == "http://a:1" and s.addressing_style() == "path"


def test_a_bad_retry_bound_in_the_environment_is_refused_where_used():
    with pytest.raises(InvalidRepositoryURL):
        parse_s3_url("s3://bucket", settings=StorageSettings(retry_attempts="many"))


def test_sizes():
    s = parse_s3_url("s3://bucket?multipart_threshold=8M&multipart_part_size=6MiB")
    assert s.multipart_threshold == 8 * 1024 * 1024 and s.part_size == 6 * 1024 * 1024


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3://UpperCase",
        "s3://ab",
        "s3://bucket/../x",
        "s3://user:pw@bucket",
        "s3://bucket?colour=blue",
        "s3://bucket?endpoint=ftp://x",
        "s3://bucket?storage_class=COLD",
        "s3://bucket?retry_attempts=0",
        "s3://bucket?multipart_part_size=1M",
        "s3://bucket?path_style=maybe",
        "http://bucket",
    ],
)
def test_bad_urls(url):
    with pytest.raises(InvalidRepositoryURL) as info:
        parse_s3_url(url)
    assert info.value.exit_code == EXIT_ERROR
