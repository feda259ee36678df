"""Credentials that botocore gets from another AWS service: a profile that assumes a role (``role_arn`` with
``source_profile``) and web identity federation (``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``, as in
GitHub Actions' OIDC or EKS).  Both make botocore build an STS client on the same session as the S3 one, so
the session's data loader must find STS's model too.  moto's server answers STS, reached through
``AWS_ENDPOINT_URL_STS``."""

from __future__ import annotations

import pytest

from packvault.storage.accounting import RequestCounter
from packvault.storage.s3.client import make_client
from packvault.storage.s3.config import parse_s3_url
from tests.support.cli import run_process
from tests.support.s3servers import free_port, new_bucket

ROLE = "arn:aws:iam::123456789012:role/packvault-backup"


@pytest.fixture
def role_profile(monkeypatch, tmp_path, s3_env, moto_endpoint) -> str:
    """A profile ``backup`` that assumes ROLE with the static keys of the profile ``base``; no keys in the
    environment, so only the role can sign."""
    (tmp_path / "config").write_text(
        "[profile base]\nregion = us-east-1\n"
        f"[profile backup]\nrole_arn = {ROLE}\nsource_profile = base\nregion = us-east-1\n"
    )
    (tmp_path / "credentials").write_text("[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = base\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_endpoint)
    return "backup"


def _signing_key(client) -> str:
    return client._request_signer._credentials.get_frozen_credentials().access_key


def _round_trip(client, bucket: str) -> None:
    client.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


def test_a_profile_that_assumes_a_role_signs_with_the_roles_keys(fresh_loader, role_profile, moto_endpoint):
    bucket = new_bucket(moto_endpoint)
    settings = parse_s3_url(f"s3://{bucket}?endpoint={moto_endpoint}&path_style=1&profile={role_profile}")
    client = make_client(settings, RequestCounter())
    _round_trip(client, bucket)
    assert _signing_key(client) not in ("AKIDBASE", "testing"), "signed with the role's temporary keys"


def test_web_identity_federation_signs_with_the_roles_keys(fresh_loader, monkeypatch, tmp_path, moto_endpoint):
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJjaSJ9.")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_endpoint)
    bucket = new_bucket(moto_endpoint)
    client = make_client(parse_s3_url(f"s3://{bucket}?endpoint={moto_endpoint}&path_style=1"), RequestCounter())
    _round_trip(client, bucket)
    assert _signing_key(client) != "testing"


def test_backup_and_restore_with_a_role_profile(pv, role_profile, moto_endpoint, tmp_path):
    bucket = new_bucket(moto_endpoint)
    url = f"s3://{bucket}/repo?endpoint={moto_endpoint}"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"assumed role\n" * 1000)
    pv("init", url, "--s3-profile", role_profile)
    pv("create", f"{url}::one", str(src), "--s3-profile", role_profile)
    out = tmp_path / "out"
    pv("extract", f"{url}::one", "--target", out, "--s3-profile", role_profile)
    assert (out / str(src).lstrip("/") / "a.txt").read_bytes() == (src / "a.txt").read_bytes()


def test_a_role_that_cannot_be_assumed_is_one_line_about_credentials(pv_env, role_profile, moto_endpoint, monkeypatch):
    """STS unreachable: the command says, in one line, that the profile's credentials could not be had (not
    that the S3 endpoint is unreachable), and botocore's own log of the failure shows no traceback."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{free_port()}")
    bucket = new_bucket(moto_endpoint)
    result = run_process("init", f"s3://{bucket}/repo?endpoint={moto_endpoint}", "--s3-profile", role_profile, env={})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "credentials" in lines[0] and "'backup'" in lines[0], lines[0]
    assert moto_endpoint not in lines[0], "the S3 endpoint is not to blame"


def test_a_credential_process_that_fails_is_one_line_about_credentials(pv_env, monkeypatch, tmp_path, s3_env,
                                                                       moto_endpoint):
    (tmp_path / "config").write_text("[profile proc]\ncredential_process = /bin/false\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    bucket = new_bucket(moto_endpoint)
    result = run_process("init", f"s3://{bucket}/repo?endpoint={moto_endpoint}", "--s3-profile", "proc", env={})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "credentials" in lines[0] and "'proc'" in lines[0], result.stderr
