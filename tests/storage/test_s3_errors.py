"""Clear, single-line errors with exit code 2 for the usual set-up mistakes."""

from __future__ import annotations

import os

import pytest

from packvault.errors import AccessDenied, InvalidRepositoryURL, NoCredentials, PackvaultError
from packvault.storage.s3 import open_s3_backend
from packvault.storage.settings import from_environment
from packvault.storage.url import store_from_location


def test_wrong_credentials_give_access_denied(moto_endpoint, make_s3_url, fault_proxy):
    # neither moto nor LocalStack check signatures: the proxy answers like AWS does for a bad key
    url = make_s3_url(moto_endpoint)
    proxy = fault_proxy(moto_endpoint, fault_rate=1.0, kinds=["403"])
    be = open_s3_backend(url.replace(moto_endpoint, proxy.endpoint), {}, settings=from_environment(os.environ))
    with pytest.raises(AccessDenied) as info:
        be.open()
    assert info.value.exit_code == 2
    assert "\n" not in info.value.one_line()
    assert proxy.faults["403"] == 1  # not retried


def test_no_credentials(moto_endpoint, make_s3_url, monkeypatch):
    url = make_s3_url(moto_endpoint)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(NoCredentials) as info:
        open_s3_backend(url, {}, settings=from_environment(os.environ)).open()
    assert info.value.exit_code == 2


def test_unknown_profile(s3_env):
    with pytest.raises(NoCredentials):
        open_s3_backend("s3://bucket?profile=does-not-exist", {}, settings=from_environment(os.environ))


def test_bad_url_through_the_lead_entry_point(s3_env):
    with pytest.raises(InvalidRepositoryURL):
        store_from_location("s3://Bad_Bucket/x", settings=from_environment(os.environ))
    with pytest.raises(InvalidRepositoryURL):
        store_from_location("s3://bucket?what=ever", settings=from_environment(os.environ))


def test_errors_are_packvault_errors(moto_endpoint, s3_env):
    be = open_s3_backend(f"s3://missing-bucket-xyz?endpoint={moto_endpoint}", {}, settings=from_environment(os.environ))
    with pytest.raises(PackvaultError):
        be.open()
