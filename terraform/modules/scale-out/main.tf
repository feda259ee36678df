# Scale-out backup of one bucket: EventBridge Scheduler -> Step Functions (plan -> Distributed Map of parts -> merge),
# each step a Lambda function running packvault.serverless.scaleout.handler from the scheduled-backup image.
#
# The repository needs no coordinator (shared locks, convergent content-named writes), so the state machine only
# hands out key ranges and calls the merge. Every function has its own role with only what its step needs.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  create_kms_key = var.kms_key_arn == null
  kms_key_arn    = local.create_kms_key ? aws_kms_key.this[0].arn : var.kms_key_arn
  create_secret  = var.passphrase_secret_arn == null
  secret_arn     = local.create_secret ? aws_secretsmanager_secret.passphrase[0].arn : var.passphrase_secret_arn

  # s3://bucket/prefix -> bucket, "prefix/" (or "" for a whole bucket), as the policies need them.
  repository_parts      = regex("^s3://([^/]+)/?(.*)$", var.repository_url)
  repository_bucket     = local.repository_parts[0]
  repository_key_prefix = trimsuffix(local.repository_parts[1], "/") == "" ? "" : "${trimsuffix(local.repository_parts[1], "/")}/"
  repository_objects    = "arn:${local.partition}:s3:::${local.repository_bucket}/${local.repository_key_prefix}"
  source_parts          = regex("^s3://([^/]+)/?(.*)$", var.source_url)
  source_bucket_arn     = "arn:${local.partition}:s3:::${local.source_parts[0]}"
  source_key_prefix     = trimsuffix(local.source_parts[1], "/") == "" ? "" : "${trimsuffix(local.source_parts[1], "/")}/"

  work_prefix    = coalesce(var.work_prefix, "packvault-scale-out/${var.name}/")
  plans_prefix   = "${local.work_prefix}plans/"
  results_prefix = "${local.work_prefix}results/"
  work_objects   = "arn:${local.partition}:s3:::${var.work_bucket_name}/${local.work_prefix}"

  state_machine_name = var.name
  state_machine_arn  = "arn:${local.partition}:states:${local.region}:${local.account_id}:stateMachine:${local.state_machine_name}"
  log_group_prefix   = "/aws/lambda/${var.name}-"
  sfn_log_group_name = "/aws/vendedlogs/states/${var.name}"

  functions = {
    plan  = { memory = var.plan_merge_memory_size, concurrency = 1, description = "Packvault scale-out ${var.name}: partition plan of ${var.source_url}" }
    part  = { memory = var.memory_size, concurrency = var.max_concurrency, description = "Packvault scale-out ${var.name}: back up one key range into ${var.repository_url}" }
    merge = { memory = var.plan_merge_memory_size, concurrency = 1, description = "Packvault scale-out ${var.name}: merge the parts into one archive" }
  }

  # The contract with packvault.serverless.scaleout.handler (the same variables as the scheduled job's).
  handler_environment = {
    PACKVAULT_REPO                  = var.repository_url
    PACKVAULT_PASSPHRASE_SECRET_ARN = local.secret_arn
    PACKVAULT_ARCHIVE_PREFIX        = coalesce(var.archive_prefix, var.name)
    PACKVAULT_ARCHIVE_PERIOD        = var.archive_period
    PACKVAULT_CACHE_DIR             = "/tmp/packvault/cache"
    PACKVAULT_CONFIG_DIR            = "/tmp/packvault/config"
  }
  environment = merge(var.extra_environment, local.handler_environment)

  step_function_arns = [for function in aws_lambda_function.this : function.arn]

  # Values substituted into state-machine.asl.json. LocalStack's ASL parser accepts ToleratedFailurePercentage
  # only as a decimal literal, and AWS takes either, so it is always rendered with one decimal.
  asl_variables = {
    source_url                   = var.source_url
    parts                        = var.parts
    work_bucket                  = var.work_bucket_name
    plans_prefix                 = local.plans_prefix
    results_prefix               = local.results_prefix
    plan_resource                = aws_lambda_function.this["plan"].arn
    part_resource                = aws_lambda_function.this["part"].arn
    merge_resource               = aws_lambda_function.this["merge"].arn
    max_concurrency              = var.max_concurrency
    tolerated_failure_percentage = format("%.1f", var.tolerated_failure_percentage)
    part_max_attempts            = var.part_max_attempts
    part_retry_interval_seconds  = var.part_retry_interval_seconds
    task_timeout_seconds         = var.timeout + 60
  }
}

# ---------------------------------------------------------------------------------------------------------------
# Encryption key for everything this module owns (secret, logs, environments, schedule, dead-letter queue).

data "aws_iam_policy_document" "kms" {
  count = local.create_kms_key ? 1 : 0

  # The account (i.e. IAM policies) administers and uses the key; without this the key becomes unmanageable.
  statement {
    sid       = "AccountAdministersKey"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # CloudWatch Logs encrypts this module's log groups, and only those.
  statement {
    sid       = "CloudWatchLogsUsesKey"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values = [
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group_prefix}*",
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.sfn_log_group_name}",
      ]
    }
  }
}

resource "aws_kms_key" "this" {
  count                   = local.create_kms_key ? 1 : 0
  description             = "Packvault scale-out ${var.name}: secret, logs, environments, schedule, dead-letter queue"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms[0].json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  count         = local.create_kms_key ? 1 : 0
  name          = "alias/packvault-${var.name}"
  target_key_id = aws_kms_key.this[0].key_id
}

# The repository passphrase. Created empty: set the value out of band so it never lands in Terraform state.
resource "aws_secretsmanager_secret" "passphrase" {
  # checkov:skip=CKV2_AWS_57:A repository passphrase cannot be rotated by a Lambda rotator: it seals the repository key, so changing it needs `packvault key change-passphrase` together with the new value. Rotate it that way, by hand.
  count                   = local.create_secret ? 1 : 0
  name                    = "packvault/${var.name}/passphrase"
  description             = "Passphrase of the Packvault repository ${var.repository_url}"
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = 30
  tags                    = var.tags
}

# ---------------------------------------------------------------------------------------------------------------
# The three functions: one image, one handler, one role each.

resource "aws_cloudwatch_log_group" "function" {
  for_each          = local.functions
  name              = "${local.log_group_prefix}${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = var.tags
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each           = local.functions
  name               = "packvault-${var.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = var.tags
}

# What every function needs: its own logs, traces, and the key its environment is encrypted with.
data "aws_iam_policy_document" "function_base" {
  for_each = local.functions

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  statement {
    sid       = "DecryptEnvironment"
    actions   = ["kms:Decrypt"]
    resources = [local.kms_key_arn]
  }

  # X-Ray accepts no resource-level restriction for these two calls.
  statement {
    sid       = "WriteTraces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "function_base" {
  for_each = local.functions
  name     = "packvault-function"
  role     = aws_iam_role.function[each.key].id
  policy   = data.aws_iam_policy_document.function_base[each.key].json
}

# The plan: list the source (key names, sizes) and write the plan object. It reads no object and no repository.
data "aws_iam_policy_document" "plan" {
  statement {
    sid       = "ListSource"
    actions   = ["s3:ListBucket"]
    resources = [local.source_bucket_arn]

    dynamic "condition" {
      for_each = local.source_key_prefix == "" ? [] : [local.source_key_prefix]
      content {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = [condition.value, "${condition.value}*"]
      }
    }
  }

  statement {
    sid       = "WritePlan"
    actions   = ["s3:PutObject"]
    resources = ["arn:${local.partition}:s3:::${var.work_bucket_name}/${local.plans_prefix}*"]
  }

  dynamic "statement" {
    for_each = var.work_bucket_kms_key_arn == null ? [] : [var.work_bucket_kms_key_arn]
    content {
      sid       = "EncryptPlan"
      actions   = ["kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "plan" {
  name   = "packvault-plan"
  role   = aws_iam_role.function["plan"].id
  policy = data.aws_iam_policy_document.plan.json
}

# Parts and merge open the repository: they read the passphrase.
data "aws_iam_policy_document" "passphrase" {
  statement {
    sid       = "ReadPassphrase"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.secret_arn]
  }

  dynamic "statement" {
    for_each = var.passphrase_kms_key_arn == null ? [] : [var.passphrase_kms_key_arn]
    content {
      sid       = "DecryptSharedPassphrase"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "passphrase" {
  for_each = toset(["part", "merge"])
  name     = "packvault-passphrase"
  role     = aws_iam_role.function[each.key].id
  policy   = data.aws_iam_policy_document.passphrase.json
}

# A part reads its key range of the source; repository access comes from worker_policy_arns (the writer policy).
data "aws_iam_policy_document" "part" {
  statement {
    sid       = "ListSource"
    actions   = ["s3:ListBucket"]
    resources = [local.source_bucket_arn]

    dynamic "condition" {
      for_each = local.source_key_prefix == "" ? [] : [local.source_key_prefix]
      content {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = [condition.value, "${condition.value}*"]
      }
    }
  }

  statement {
    sid       = "ReadSource"
    actions   = ["s3:GetObject"]
    resources = ["${local.source_bucket_arn}/${local.source_key_prefix}*"]
  }

  dynamic "statement" {
    for_each = var.source_kms_key_arn == null ? [] : [var.source_kms_key_arn]
    content {
      sid       = "DecryptSource"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "part" {
  name   = "packvault-part"
  role   = aws_iam_role.function["part"].id
  policy = data.aws_iam_policy_document.part.json
}

# The merge writes like a writer (merge_policy_arns) and, beyond that, retires the parts' archive entries:
# a soft delete is a copy archives/X -> archives/X.del and a delete of archives/X. It can never remove a
# soft-deleted entry (that is compact's, with the maintainer policy), so whatever it retires stays recoverable.
data "aws_iam_policy_document" "merge" {
  statement {
    sid       = "SoftDeleteArchiveEntries"
    actions   = ["s3:PutObject"]
    resources = ["${local.repository_objects}archives/*.del"]
  }

  statement {
    sid       = "RemoveArchiveEntries"
    actions   = ["s3:DeleteObject"]
    resources = ["${local.repository_objects}archives/*"]
  }

  statement {
    sid       = "KeepSoftDeletedEntries"
    effect    = "Deny"
    actions   = ["s3:DeleteObject"]
    resources = ["${local.repository_objects}archives/*.del"]
  }
}

resource "aws_iam_role_policy" "merge" {
  name   = "packvault-merge"
  role   = aws_iam_role.function["merge"].id
  policy = data.aws_iam_policy_document.merge.json
}

resource "aws_iam_role_policy_attachment" "part_repository" {
  count      = length(var.worker_policy_arns)
  role       = aws_iam_role.function["part"].name
  policy_arn = var.worker_policy_arns[count.index]
}

resource "aws_iam_role_policy_attachment" "merge_repository" {
  count      = length(var.merge_policy_arns)
  role       = aws_iam_role.function["merge"].name
  policy_arn = var.merge_policy_arns[count.index]
}

resource "aws_lambda_function" "this" {
  # checkov:skip=CKV_AWS_272:Code signing applies only to .zip packages; these functions are a container image, whose integrity comes from the immutable ECR tag/digest.
  # checkov:skip=CKV_AWS_117:The functions talk only to S3, Secrets Manager and KMS over TLS; forcing a VPC would force NAT gateway or endpoint costs, for every part, on every user.
  # checkov:skip=CKV_AWS_116:Step Functions invokes these functions synchronously and sees every failure as a task error (retried, then caught into a Fail state); a dead-letter queue only receives failed asynchronous invocations and would stay empty.
  for_each      = local.functions
  function_name = "${var.name}-${each.key}"
  description   = each.value.description
  role          = aws_iam_role.function[each.key].arn
  package_type  = "Image"
  image_uri     = var.image_uri
  architectures = [var.architecture]
  memory_size   = each.value.memory
  timeout       = var.timeout
  kms_key_arn   = local.kms_key_arn

  # Parts: at most what the Map runs at once. Plan and merge: one at a time (an overlapping run is throttled
  # and retried, never run twice in parallel).
  reserved_concurrent_executions = each.value.concurrency

  image_config {
    command = ["packvault.serverless.scaleout.handler"]
  }

  ephemeral_storage {
    size = var.ephemeral_storage_mb
  }

  environment {
    variables = local.environment
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.function[each.key].name
  }

  tracing_config {
    mode = "Active"
  }

  tags = var.tags

  depends_on = [
    aws_iam_role_policy.function_base,
    aws_iam_role_policy.plan,
    aws_iam_role_policy.part,
    aws_iam_role_policy.merge,
    aws_iam_role_policy.passphrase,
    aws_iam_role_policy_attachment.part_repository,
    aws_iam_role_policy_attachment.merge_repository,
  ]
}
