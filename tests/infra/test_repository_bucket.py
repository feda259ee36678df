"""Security properties of terraform/modules/repository-bucket, checked on the parsed HCL.

The IAM tests render the policy documents for concrete inputs and ask the small evaluator in terraform_hcl
whether real requests would be allowed, so a policy edit that widens access fails here even if its text looks
harmless.
"""

from __future__ import annotations

from typing import Any

import pytest

from .terraform_hcl import (
    MODULES_DIR,
    Statement,
    blocks,
    is_allowed,
    is_denied,
    load_module,
    module_env,
    policy_statements,
    render,
)

MODULE = load_module(MODULES_DIR / "repository-bucket")
BUCKET = "pv-test-bucket"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
KNOWN = {"var.bucket_name": BUCKET, "aws_s3_bucket.this.arn": BUCKET_ARN, "aws_s3_bucket.this.id": BUCKET}

# One representative key per namespace of the repository layout (DESIGN.md), relative to the prefix.
NAMESPACE_KEYS = {
    "config": "config/repository",
    "keys": "keys/0f3a",
    "locks": "locks/host-123",
    "archives": "archives/9c1d",
    "archives-soft-deleted": "archives/9c1d.del",
    "names": "names/5e6f-0",
    "index": "index/77aa",
    "data-pack": "packs/data/ab/ab12cd",
    "meta-pack": "packs/meta/ef34",
}
# Actions neither credential may have: they would destroy history or weaken the bucket's protection.
FORBIDDEN_ACTIONS = [
    "s3:DeleteObjectVersion",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketObjectLockConfiguration",
    "s3:BypassGovernanceRetention",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:DeleteBucket",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutEncryptionConfiguration",
]


def policy(name: str, prefix: str = "repo", **variables: Any) -> list[Statement]:
    env = module_env(MODULE, KNOWN, repository_prefix=prefix, **variables)
    return policy_statements(MODULE.data("aws_iam_policy_document", name), env)


def object_arn(prefix: str, key: str) -> str:
    return f"{BUCKET_ARN}/{prefix}/{key}" if prefix else f"{BUCKET_ARN}/{key}"


# --- bucket ----------------------------------------------------------------------------------------------------


def test_public_access_block_blocks_all_four_ways() -> None:
    pab = MODULE.resource("aws_s3_bucket_public_access_block")
    assert pab["bucket"] == "${aws_s3_bucket.this.id}"
    for setting in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        assert pab[setting] is True, setting


def test_acls_are_disabled() -> None:
    controls = MODULE.resource("aws_s3_bucket_ownership_controls")
    assert blocks(controls, "rule")[0]["object_ownership"] == "BucketOwnerEnforced"


def test_bucket_policy_denies_every_request_without_tls() -> None:
    attached = MODULE.resource("aws_s3_bucket_policy")
    assert attached["policy"] == "${data.aws_iam_policy_document.bucket.json}"
    statements = policy("bucket")
    deny = [s for s in statements if s.effect == "Deny"]
    assert len(deny) == 1
    assert deny[0].principals == (("*", ("*",)),)
    assert ("Bool", "aws:SecureTransport", ("false",)) in deny[0].conditions
    insecure = {"aws:SecureTransport": "false"}
    secure = {"aws:SecureTransport": "true"}
    for action, resource in [
        ("s3:GetObject", f"{BUCKET_ARN}/repo/keys/x"),
        ("s3:PutObject", f"{BUCKET_ARN}/anything"),
        ("s3:ListBucket", BUCKET_ARN),
    ]:
        assert is_denied(statements, action, resource, insecure), action
        assert not is_denied(statements, action, resource, secure), action
    # The bucket policy grants nothing by itself: access comes from the identity policies only.
    assert not any(s.effect == "Allow" for s in statements)


@pytest.mark.parametrize("kms_key_arn, algorithm", [(None, "AES256"), ("arn:aws:kms:eu-1:1:key/k", "aws:kms")])
def test_default_encryption_follows_kms_key_variable(kms_key_arn: str | None, algorithm: str) -> None:
    sse = MODULE.resource("aws_s3_bucket_server_side_encryption_configuration")
    rule = blocks(sse, "rule")[0]
    default = blocks(rule, "apply_server_side_encryption_by_default")[0]
    env = module_env(MODULE, KNOWN, kms_key_arn=kms_key_arn)
    assert render(default["sse_algorithm"], env) == algorithm
    assert render(default["kms_master_key_id"], env) == kms_key_arn
    assert render(rule["bucket_key_enabled"], env) is (kms_key_arn is not None)


def lifecycle_rules() -> dict[str, dict[str, Any]]:
    lifecycle = MODULE.resource("aws_s3_bucket_lifecycle_configuration")
    assert not lifecycle.get("dynamic"), "dynamic rules hide the static ones from checkov"
    return {rule["id"]: rule for rule in blocks(lifecycle, "rule")}


def test_lifecycle_aborts_incomplete_multipart_uploads_everywhere() -> None:
    rules = [r for r in lifecycle_rules().values() if blocks(r, "abort_incomplete_multipart_upload")]
    assert len(rules) == 1
    rule = rules[0]
    assert rule["status"] == "Enabled"
    # An empty filter: the whole bucket, so parts under any prefix are cleaned.
    assert all(not f for f in blocks(rule, "filter"))
    days = blocks(rule, "abort_incomplete_multipart_upload")[0]["days_after_initiation"]
    env = module_env(MODULE, KNOWN)
    assert 1 <= render(days, env) <= 30


def test_versioning_is_on_by_default_and_old_versions_expire() -> None:
    defaults = MODULE.variable_defaults()
    assert defaults["versioning_enabled"] is True
    versioning = MODULE.resource("aws_s3_bucket_versioning")
    status = blocks(versioning, "versioning_configuration")[0]["status"]
    assert render(status, module_env(MODULE, KNOWN)) == "Enabled"
    assert render(status, module_env(MODULE, KNOWN, versioning_enabled=False)) == "Suspended"

    rule = lifecycle_rules()["expire-noncurrent-versions"]
    assert render(rule["status"], module_env(MODULE, KNOWN)) == "Enabled"
    assert blocks(rule, "noncurrent_version_expiration")[0]["noncurrent_days"] == (
        "${var.noncurrent_version_expiration_days}"
    )
    assert blocks(rule, "expiration")[0]["expired_object_delete_marker"] is True


def test_data_pack_transition_is_optional_and_limited_to_data_packs() -> None:
    rule = lifecycle_rules()["data-packs-storage-class"]
    assert render(rule["status"], module_env(MODULE, KNOWN)) == "Disabled"
    env = module_env(MODULE, KNOWN, repository_prefix="repo")
    assert render(blocks(rule, "filter")[0]["prefix"], env) == "repo/packs/data/"


def test_object_lock_is_optional_needs_versioning_and_sets_no_default_retention() -> None:
    bucket = MODULE.resource("aws_s3_bucket")
    assert render(bucket["object_lock_enabled"], module_env(MODULE, KNOWN)) is False
    assert render(bucket["object_lock_enabled"], module_env(MODULE, KNOWN, object_lock=True)) is True
    assert MODULE.variable_defaults()["object_lock"] is False
    # Packvault sets the retention per object: a bucket default would also lock lock records and dead packs
    assert "aws_s3_bucket_object_lock_configuration" not in MODULE.named("resource")
    precondition = blocks(blocks(bucket, "lifecycle")[0], "precondition")[0]
    assert "var.versioning_enabled" in precondition["condition"]


@pytest.mark.parametrize("name", ["writer", "maintainer"])
def test_object_lock_grants_retention_but_never_the_bypass(name: str) -> None:
    arn = object_arn("repo", "packs/data/ab/x")
    assert not is_allowed(policy(name, "repo"), "s3:PutObjectRetention", arn)
    locked = policy(name, "repo", object_lock=True)
    for action in ("s3:PutObjectRetention", "s3:GetObjectRetention"):
        assert is_allowed(locked, action, arn), action
        assert is_allowed(locked, action, object_arn("repo", "archives/9c1d")), action
        assert not is_allowed(locked, action, f"{BUCKET_ARN}/other/packs/data/ab/x"), action
    assert is_allowed(locked, "s3:GetBucketObjectLockConfiguration", BUCKET_ARN)
    for action in ("s3:BypassGovernanceRetention", "s3:PutBucketObjectLockConfiguration", "s3:DeleteObjectVersion"):
        assert not is_allowed(locked, action, arn) and not is_allowed(locked, action, BUCKET_ARN), action
    if name == "writer":  # a lock record with a retention could never be released
        assert not is_allowed(locked, "s3:PutObjectRetention", object_arn("repo", "locks/host-1"))


def test_outputs_name_and_arn() -> None:
    outputs = MODULE.named("output")
    assert outputs["bucket_name"]["value"] == "${aws_s3_bucket.this.id}"
    assert outputs["bucket_arn"]["value"] == "${aws_s3_bucket.this.arn}"
    for name in ("writer_policy_json", "maintainer_policy_json", "writer_policy_arn", "maintainer_policy_arn"):
        assert name in outputs


# --- IAM: writer ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["repo", "team/a", ""])
def test_writer_may_delete_only_lock_objects(prefix: str) -> None:
    writer = policy("writer", prefix)
    for namespace, key in NAMESPACE_KEYS.items():
        allowed = is_allowed(writer, "s3:DeleteObject", object_arn(prefix, key))
        assert allowed is (namespace == "locks"), namespace


@pytest.mark.parametrize("prefix", ["repo", ""])
def test_writer_creates_data_but_cannot_replace_keys_or_config(prefix: str) -> None:
    writer = policy("writer", prefix)
    for namespace, key in NAMESPACE_KEYS.items():
        arn = object_arn(prefix, key)
        assert is_allowed(writer, "s3:GetObject", arn), namespace
        may_put = namespace not in ("config", "keys")
        create_only = {"s3:ObjectCreationOperation": "true", "s3:if-none-match": "*"}  # how Packvault writes
        assert is_allowed(writer, "s3:PutObject", arn, create_only) is may_put, namespace


def test_writer_and_maintainer_stay_inside_the_prefix() -> None:
    for name in ("writer", "maintainer"):
        statements = policy(name, "repo")
        for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
            assert not is_allowed(statements, action, f"{BUCKET_ARN}/other/packs/data/ab/x"), (name, action)
            assert not is_allowed(statements, action, f"{BUCKET_ARN}/repository-2/keys/x"), (name, action)
        assert is_allowed(statements, "s3:ListBucket", BUCKET_ARN, {"s3:prefix": "repo/packs/data/"})
        assert not is_allowed(statements, "s3:ListBucket", BUCKET_ARN, {"s3:prefix": "other/"})


@pytest.mark.parametrize("name", ["writer", "maintainer"])
def test_no_credential_can_destroy_history_or_weaken_the_bucket(name: str) -> None:
    statements = policy(name, "repo", kms_key_arn="arn:aws:kms:eu-1:1:key/k")
    for statement in statements:
        assert all("*" not in action for action in statement.actions), statement
    for action in FORBIDDEN_ACTIONS:
        assert not is_allowed(statements, action, BUCKET_ARN), action
        assert not is_allowed(statements, action, object_arn("repo", "packs/data/ab/x")), action


def test_writer_conditional_writes_enforcement() -> None:
    writer = policy("writer", "repo", writer_require_conditional_writes=True)
    arn = object_arn("repo", "packs/data/ab/new")
    whole_put = {"s3:ObjectCreationOperation": "true"}
    assert not is_allowed(writer, "s3:PutObject", arn, whole_put)
    assert is_allowed(writer, "s3:PutObject", arn, {**whole_put, "s3:if-none-match": "*"})
    # CreateMultipartUpload / UploadPart cannot carry the header and must still work.
    assert is_allowed(writer, "s3:PutObject", arn, {"s3:ObjectCreationOperation": "false"})
    # On by default (issue 14): a plain, overwriting PUT is refused unless enforcement is turned off.
    assert not is_allowed(policy("writer", "repo"), "s3:PutObject", arn, whole_put)
    assert MODULE.variable_defaults()["writer_require_conditional_writes"] is True
    assert is_allowed(policy("writer", "repo", writer_require_conditional_writes=False), "s3:PutObject", arn, whole_put)


# --- IAM: maintainer -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["repo", ""])
def test_maintainer_may_delete_and_rewrite_everything_in_the_repository(prefix: str) -> None:
    maintainer = policy("maintainer", prefix)
    for namespace, key in NAMESPACE_KEYS.items():
        arn = object_arn(prefix, key)
        for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
            assert is_allowed(maintainer, action, arn), (namespace, action)


@pytest.mark.parametrize("name", ["writer", "maintainer"])
def test_kms_permissions_only_with_a_kms_key(name: str) -> None:
    key = "arn:aws:kms:eu-1:1:key/k"
    with_key = policy(name, "repo", kms_key_arn=key)
    assert is_allowed(with_key, "kms:GenerateDataKey", key)
    assert is_allowed(with_key, "kms:Decrypt", key)
    assert not is_allowed(with_key, "kms:Decrypt", "arn:aws:kms:eu-1:1:key/other")
    without = policy(name, "repo")
    assert not any(a.startswith("kms:") for s in without for a in s.actions)


def test_managed_policies_use_the_documents() -> None:
    assert MODULE.resource("aws_iam_policy", "writer")["policy"] == "${data.aws_iam_policy_document.writer.json}"
    maintainer = MODULE.resource("aws_iam_policy", "maintainer")
    assert maintainer["policy"] == "${data.aws_iam_policy_document.maintainer.json}"
