"""Wiring and security properties of terraform/modules/scheduled-backup and its container image."""

from __future__ import annotations

import json
import re

from .terraform_hcl import (
    MODULES_DIR,
    REPO_ROOT,
    blocks,
    dynamic_blocks,
    is_allowed,
    load_module,
    module_env,
    policy_statements,
    render,
)

MODULE_DIR = MODULES_DIR / "scheduled-backup"
MODULE = load_module(MODULE_DIR)
DOCKERFILE = MODULE_DIR / "image" / "Dockerfile"

FUNCTION_ARN = "arn:aws:lambda:eu-1:111122223333:function:nightly"
LOG_GROUP_ARN = "arn:aws:logs:eu-1:111122223333:log-group:/aws/lambda/nightly"
QUEUE_ARN = "arn:aws:sqs:eu-1:111122223333:packvault-nightly-dead-letter"
KEY_ARN = "arn:aws:kms:eu-1:111122223333:key/job"
SECRET_ARN = "arn:aws:secretsmanager:eu-1:111122223333:secret:packvault/nightly/passphrase-AbCdEf"
KNOWN = {
    "var.name": "nightly",
    "var.repository_url": "s3://bucket/repo",
    "var.image_uri": "1.dkr.ecr.eu-1.amazonaws.com/packvault:1",
    "var.repository_policy_arns": ["arn:aws:iam::111122223333:policy/writer"],
    "aws_lambda_function.this.arn": FUNCTION_ARN,
    "aws_cloudwatch_log_group.this.arn": LOG_GROUP_ARN,
    "aws_sqs_queue.dead_letter.arn": QUEUE_ARN,
    "aws_kms_key.this[0].arn": KEY_ARN,
    "aws_secretsmanager_secret.passphrase[0].arn": SECRET_ARN,
    "data.aws_caller_identity.current.account_id": "111122223333",
    "data.aws_partition.current.partition": "aws",
    "data.aws_region.current.name": "eu-1",
}


def env(**variables: object) -> dict:
    return module_env(MODULE, KNOWN, **variables)


def function() -> dict:
    return MODULE.resource("aws_lambda_function")


def test_log_group_has_retention_and_is_the_functions_log_group() -> None:
    log_group = MODULE.resource("aws_cloudwatch_log_group")
    assert log_group["retention_in_days"] == "${var.log_retention_days}"
    default = MODULE.variable_defaults()["log_retention_days"]
    assert isinstance(default, int) and default >= 365
    assert render(log_group["name"], env()) == "/aws/lambda/nightly"
    assert log_group["kms_key_id"] == "${local.kms_key_arn}"
    logging = blocks(function(), "logging_config")[0]
    assert logging["log_group"] == "${aws_cloudwatch_log_group.this.name}"


def test_function_writes_only_its_own_logs() -> None:
    statements = policy_statements(MODULE.data("aws_iam_policy_document", "lambda"), env())
    assert is_allowed(statements, "logs:PutLogEvents", f"{LOG_GROUP_ARN}:log-stream:2026/01/01/x")
    assert not is_allowed(statements, "logs:PutLogEvents", "arn:aws:logs:eu-1:111122223333:log-group:other:x")
    assert not is_allowed(statements, "logs:CreateLogGroup", LOG_GROUP_ARN)
    # Deleting its own log streams would let a compromised run hide what it did.
    assert not is_allowed(statements, "logs:DeleteLogStream", f"{LOG_GROUP_ARN}:log-stream:2026/01/01/x")
    assert all("*" not in action for s in statements for action in s.actions)


def test_schedule_targets_the_function_through_its_own_role() -> None:
    schedule = MODULE.resource("aws_scheduler_schedule")
    target = blocks(schedule, "target")[0]
    assert target["arn"] == "${aws_lambda_function.this.arn}"
    assert target["role_arn"] == "${aws_iam_role.scheduler.arn}"
    assert blocks(target, "dead_letter_config")[0]["arn"] == "${aws_sqs_queue.dead_letter.arn}"
    assert schedule["schedule_expression"] == "${var.schedule_expression}"
    assert blocks(schedule, "flexible_time_window")[0]["mode"] == "OFF"

    role = MODULE.resource("aws_iam_role", "scheduler")
    assert role["assume_role_policy"] == "${data.aws_iam_policy_document.scheduler_assume.json}"
    assume = policy_statements(MODULE.data("aws_iam_policy_document", "scheduler_assume"), env())
    assert [p for s in assume for p in s.principals] == [("Service", ("scheduler.amazonaws.com",))]

    invoke = policy_statements(MODULE.data("aws_iam_policy_document", "scheduler"), env())
    assert is_allowed(invoke, "lambda:InvokeFunction", FUNCTION_ARN)
    assert not is_allowed(invoke, "lambda:InvokeFunction", "arn:aws:lambda:eu-1:111122223333:function:other")
    assert MODULE.resource("aws_iam_role_policy", "scheduler")["role"] == "${aws_iam_role.scheduler.id}"


def test_passphrase_comes_from_secrets_manager_and_never_from_terraform_state() -> None:
    variables = function()["environment"][0]["variables"]
    assert variables == "${local.environment}"
    environment = env()["local.environment"]
    assert environment["PACKVAULT_PASSPHRASE_SECRET_ARN"] == SECRET_ARN
    assert "PACKVAULT_PASSPHRASE" not in environment
    # The module creates an empty secret; the value is put in out of band.
    assert MODULE.resources("aws_secretsmanager_secret_version") == {}
    assert MODULE.resource("aws_secretsmanager_secret", "passphrase")["kms_key_id"] == "${local.kms_key_arn}"

    statements = policy_statements(MODULE.data("aws_iam_policy_document", "lambda"), env())
    assert is_allowed(statements, "secretsmanager:GetSecretValue", SECRET_ARN)
    assert not is_allowed(statements, "secretsmanager:GetSecretValue", SECRET_ARN.replace("nightly", "other"))
    assert is_allowed(statements, "kms:Decrypt", KEY_ARN)


def test_an_existing_secret_replaces_the_created_one() -> None:
    existing = "arn:aws:secretsmanager:eu-1:111122223333:secret:shared-XyZ"
    shared_key = "arn:aws:kms:eu-1:111122223333:key/shared"
    custom = env(passphrase_secret_arn=existing, passphrase_kms_key_arn=shared_key)
    assert custom["local.environment"]["PACKVAULT_PASSPHRASE_SECRET_ARN"] == existing
    statements = policy_statements(MODULE.data("aws_iam_policy_document", "lambda"), custom)
    assert is_allowed(statements, "secretsmanager:GetSecretValue", existing)
    assert is_allowed(statements, "kms:Decrypt", shared_key)
    assert not is_allowed(statements, "kms:Decrypt", "arn:aws:kms:eu-1:111122223333:key/third")
    secret = MODULE.resource("aws_secretsmanager_secret", "passphrase")
    assert secret["count"] == "${local.create_secret ? 1 : 0}"


def test_environment_carries_the_handler_contract() -> None:
    environment = env(
        sources=["s3://data/docs", "/mnt/data"],
        prune={"keep_daily": 7, "keep_weekly": 4},
        compact=True,
        extra_environment={"PACKVAULT_REPO": "s3://elsewhere", "PACKVAULT_LOCK_WAIT": "120"},
    )["local.environment"]
    # extra_environment may tune, but the job's own repository and secret win.
    assert environment["PACKVAULT_REPO"] == "s3://bucket/repo"
    assert environment["PACKVAULT_LOCK_WAIT"] == "120"
    assert json.loads(environment["PACKVAULT_SOURCES"]) == ["s3://data/docs", "/mnt/data"]
    assert json.loads(environment["PACKVAULT_PRUNE"]) == {"keep_daily": 7, "keep_weekly": 4}
    assert environment["PACKVAULT_COMPACT"] == "1"
    # Lambda's file system is read-only outside /tmp.
    for name in ("PACKVAULT_CACHE_DIR", "PACKVAULT_CONFIG_DIR"):
        assert environment[name].startswith("/tmp/")

    backup_only = env(sources=["/mnt/data"])["local.environment"]
    assert "PACKVAULT_PRUNE" not in backup_only
    assert backup_only["PACKVAULT_COMPACT"] == "0"


def test_function_runs_the_container_image_one_at_a_time() -> None:
    fn = function()
    assert fn["package_type"] == "Image"
    assert fn["image_uri"] == "${var.image_uri}"
    assert fn["reserved_concurrent_executions"] == 1
    assert fn["role"] == "${aws_iam_role.lambda.arn}"
    assert fn["kms_key_arn"] == "${local.kms_key_arn}"
    assert blocks(fn, "dead_letter_config")[0]["target_arn"] == "${aws_sqs_queue.dead_letter.arn}"
    timeout = MODULE.named("variable")["timeout"]
    assert "var.timeout <= 900" in blocks(timeout, "validation")[0]["condition"]
    assert {d["for_each"] for d in dynamic_blocks(fn, "vpc_config")} == {"${local.in_vpc ? [1] : []}"}


def test_repository_access_comes_only_from_the_given_policies() -> None:
    attachment = MODULE.resource("aws_iam_role_policy_attachment", "repository")
    assert attachment["policy_arn"] == "${var.repository_policy_arns[count.index]}"
    statements = policy_statements(MODULE.data("aws_iam_policy_document", "lambda"), env())
    assert not any(a.startswith("s3:") for s in statements for a in s.actions)
    # The only wildcard resource is X-Ray's, which has no resource-level permissions.
    wildcard = [s for s in statements if "*" in s.resources]
    assert [set(s.actions) for s in wildcard] == [{"xray:PutTraceSegments", "xray:PutTelemetryRecords"}]


def test_created_kms_key_rotates_and_lets_logs_use_it_only_for_this_log_group() -> None:
    key = MODULE.resource("aws_kms_key")
    assert key["enable_key_rotation"] is True
    statements = policy_statements(MODULE.data("aws_iam_policy_document", "kms"), env())
    logs = [s for s in statements if ("Service", ("logs.eu-1.amazonaws.com",)) in s.principals]
    assert len(logs) == 1
    assert ("ArnEquals", "kms:EncryptionContext:aws:logs:arn", (LOG_GROUP_ARN,)) in logs[0].conditions


def test_dockerfile_installs_this_repository_and_runs_the_handler() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert any(re.match(r"COPY\s+src\s", line) for line in instructions)
    assert any(re.match(r"COPY\s+pyproject\.toml\b", line) for line in instructions)
    cmd = [line for line in instructions if line.startswith("CMD")]
    assert len(cmd) == 1 and json.loads(cmd[0][3:].strip()) == ["packvault.serverless.handler"]
    entrypoint = [line for line in instructions if line.startswith("ENTRYPOINT")]
    assert json.loads(entrypoint[0][10:].strip())[-1] == "awslambdaric"
    assert any(line.startswith("USER") for line in instructions)
    # Paths the Dockerfile copies from the build context (the repository root) must exist there.
    assert (REPO_ROOT / "src" / "packvault").is_dir() and (REPO_ROOT / "pyproject.toml").is_file()


def test_handler_module_path_exists() -> None:
    assert (REPO_ROOT / "src" / "packvault" / "serverless" / "__init__.py").is_file()


BUCKET_ARN = "arn:aws:s3:::bucket"
LOCKED = {
    "object_lock_mode": "governance",
    "object_lock_retention": "30d",
    "retention_extension_period": "60d",
    "repository_bucket_arn": BUCKET_ARN,
}


def test_object_lock_variables_reach_the_handler_environment() -> None:
    environment = env(**LOCKED)["local.environment"]
    assert environment["PACKVAULT_OBJECT_LOCK"] == "governance"
    assert environment["PACKVAULT_RETENTION"] == "30d"
    assert environment["PACKVAULT_RETENTION_EXTEND"] == "60d"
    # what packvault.serverless.job makes of them
    from packvault.serverless.job import load_job

    job = load_job({}, {**environment, "PACKVAULT_SOURCES": "[]"})
    assert job.s3_options() == {"object_lock": "governance", "retention": "30d"}
    assert job.retention_extend == 60 * 86400
    plain = env()["local.environment"]
    assert not {"PACKVAULT_OBJECT_LOCK", "PACKVAULT_RETENTION", "PACKVAULT_RETENTION_EXTEND"} & set(plain)
    # extra_environment cannot loosen them either: the module's own values win
    forced = env(**LOCKED, extra_environment={"PACKVAULT_OBJECT_LOCK": "off"})["local.environment"]
    assert forced["PACKVAULT_OBJECT_LOCK"] == "governance"


def test_object_lock_grants_retention_on_the_repository_bucket_only() -> None:
    statements = policy_statements(MODULE.data("aws_iam_policy_document", "lambda"), env(**LOCKED))
    pack = f"{BUCKET_ARN}/repo/packs/data/ab/abcd"
    assert is_allowed(statements, "s3:PutObjectRetention", pack)
    assert is_allowed(statements, "s3:GetObjectRetention", pack)
    assert is_allowed(statements, "s3:GetBucketObjectLockConfiguration", BUCKET_ARN)
    assert not is_allowed(statements, "s3:PutObjectRetention", "arn:aws:s3:::other/repo/packs/data/ab/abcd")
    assert not is_allowed(statements, "s3:BypassGovernanceRetention", pack)  # shortening stays impossible
    assert not is_allowed(statements, "s3:RestoreObject", pack)  # not asked for
    without = policy_statements(MODULE.data("aws_iam_policy_document", "lambda"), env())
    assert not is_allowed(without, "s3:PutObjectRetention", pack)


def test_restore_cold_packs_grants_restore_object_on_the_repository_bucket_only() -> None:
    statements = policy_statements(
        MODULE.data("aws_iam_policy_document", "lambda"), env(restore_cold_packs=True, repository_bucket_arn=BUCKET_ARN)
    )
    assert is_allowed(statements, "s3:RestoreObject", f"{BUCKET_ARN}/repo/packs/data/ab/abcd")
    assert not is_allowed(statements, "s3:RestoreObject", "arn:aws:s3:::other/x")
    assert not is_allowed(statements, "s3:PutObjectRetention", f"{BUCKET_ARN}/repo/packs/data/ab/abcd")


def test_object_lock_settings_are_checked_by_preconditions_and_validations() -> None:
    conditions = [p["condition"] for p in blocks(blocks(function(), "lifecycle")[0], "precondition")]
    pairing = next(c for c in conditions if "object_lock_retention" in c and "repository_bucket_arn" not in c)
    scoped = next(c for c in conditions if "repository_bucket_arn" in c)

    def holds(condition: str, **variables: object) -> bool:
        return render(condition, env(**variables))

    assert holds(pairing) and holds(pairing, **LOCKED)
    assert not holds(pairing, object_lock_mode="governance")
    assert not holds(pairing, object_lock_retention="30d")
    assert holds(scoped) and holds(scoped, **LOCKED)
    assert not holds(scoped, object_lock_mode="governance", object_lock_retention="30d")
    assert not holds(scoped, restore_cold_packs=True)
    variables = MODULE.named("variable")
    for name in ("object_lock_mode", "object_lock_retention", "retention_extension_period"):
        assert blocks(variables[name], "validation"), name
        assert variables[name]["default"] is None
    assert variables["restore_cold_packs"]["default"] is False
