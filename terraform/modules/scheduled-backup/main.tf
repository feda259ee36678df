# A scheduled Packvault job: EventBridge Scheduler -> Lambda (container image) -> repository bucket.
#
# One instance is one job. Least privilege suggests two instances per repository: a frequent backup job whose
# role has only the writer policy, and a rarer maintenance job (prune + compact, no sources) with the maintainer
# policy. See terraform/examples/complete.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  log_group_name = "/aws/lambda/${var.name}"
  create_kms_key = var.kms_key_arn == null
  kms_key_arn    = local.create_kms_key ? aws_kms_key.this[0].arn : var.kms_key_arn
  create_secret  = var.passphrase_secret_arn == null
  secret_arn     = local.create_secret ? aws_secretsmanager_secret.passphrase[0].arn : var.passphrase_secret_arn
  in_vpc         = length(var.subnet_ids) > 0

  # The contract with packvault.serverless.handler. Only references to secrets go here, never secrets.
  handler_environment = {
    PACKVAULT_REPO                  = var.repository_url
    PACKVAULT_SOURCES               = jsonencode(var.sources)
    PACKVAULT_PASSPHRASE_SECRET_ARN = local.secret_arn
    PACKVAULT_COMPACT               = var.compact ? "1" : "0"
    PACKVAULT_CACHE_DIR             = "/tmp/packvault/cache"
    PACKVAULT_CONFIG_DIR            = "/tmp/packvault/config"
  }
  prune_environment = var.prune == null ? {} : { PACKVAULT_PRUNE = jsonencode(var.prune) }
  # S3 Object Lock (read by packvault.serverless.job): the mode and retention the job writes with, and the
  # period compact's retention extension gives live objects.
  lock_mode_environment      = var.object_lock_mode == null ? {} : { PACKVAULT_OBJECT_LOCK = var.object_lock_mode }
  lock_retention_environment = var.object_lock_retention == null ? {} : { PACKVAULT_RETENTION = var.object_lock_retention }
  lock_extend_environment    = var.retention_extension_period == null ? {} : { PACKVAULT_RETENTION_EXTEND = var.retention_extension_period }

  # extra_environment first, so it can tune Packvault but never redirect the job's repository or secret.
  environment = merge(var.extra_environment, local.prune_environment, local.lock_mode_environment, local.lock_retention_environment, local.lock_extend_environment, local.handler_environment)
}

# ---------------------------------------------------------------------------------------------------------------
# Encryption key for everything this job owns (secret, logs, environment, schedule, dead-letter queue).

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

  # CloudWatch Logs encrypts the log group itself, and only for this job's log group.
  statement {
    sid       = "CloudWatchLogsUsesKey"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group_name}"]
    }
  }
}

resource "aws_kms_key" "this" {
  count                   = local.create_kms_key ? 1 : 0
  description             = "Packvault job ${var.name}: secret, logs, environment, schedule, dead-letter queue"
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

# ---------------------------------------------------------------------------------------------------------------
# The repository passphrase. Created empty: set the value out of band, e.g.
#   aws secretsmanager put-secret-value --secret-id <arn> --secret-string "$PASSPHRASE"
# so it never appears in Terraform state or plan output.

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
# Logs and failures.

resource "aws_cloudwatch_log_group" "this" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = var.tags
}

# Runs that failed after all retries (scheduler could not invoke, or the function kept failing) land here, so a
# missed backup is visible and can be alarmed on.
resource "aws_sqs_queue" "dead_letter" {
  name                              = "packvault-${var.name}-dead-letter"
  message_retention_seconds         = 1209600
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 3600
  tags                              = var.tags
}

# ---------------------------------------------------------------------------------------------------------------
# The function and its role.

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  name               = "packvault-${var.name}-function"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "lambda" {
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }

  statement {
    sid       = "ReadPassphrase"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.secret_arn]
  }

  # Decrypt: the secret and the environment. GenerateDataKey: sending to the encrypted dead-letter queue.
  statement {
    sid       = "UseJobKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
  }

  dynamic "statement" {
    for_each = var.passphrase_kms_key_arn == null ? [] : [var.passphrase_kms_key_arn]
    content {
      sid       = "DecryptSharedPassphrase"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }

  statement {
    sid       = "SendToDeadLetterQueue"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letter.arn]
  }

  # Object Lock: every write carries a retention, compact extends that of live objects (never shortens it: that
  # would need s3:BypassGovernanceRetention, which the job never gets), and the first write of a run reads the
  # bucket's Object Lock configuration.
  dynamic "statement" {
    for_each = var.object_lock_mode == null ? [] : [var.repository_bucket_arn]
    content {
      sid       = "ObjectLockRetention"
      actions   = ["s3:PutObjectRetention", "s3:GetObjectRetention"]
      resources = ["${statement.value}/*"]
    }
  }

  dynamic "statement" {
    for_each = var.object_lock_mode == null ? [] : [var.repository_bucket_arn]
    content {
      sid       = "ObjectLockConfiguration"
      actions   = ["s3:GetBucketObjectLockConfiguration"]
      resources = [statement.value]
    }
  }

  # Cold data packs (GLACIER, DEEP_ARCHIVE): an extract job asks for their restores.
  dynamic "statement" {
    for_each = var.restore_cold_packs ? [var.repository_bucket_arn] : []
    content {
      sid       = "RestoreColdPacks"
      actions   = ["s3:RestoreObject"]
      resources = ["${statement.value}/*"]
    }
  }

  # X-Ray accepts no resource-level restriction for these two calls.
  statement {
    sid       = "WriteTraces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "lambda" {
  name   = "packvault-job"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda.json
}

# Repository access (writer or maintainer policy from the repository-bucket module) and source read access.
resource "aws_iam_role_policy_attachment" "repository" {
  count      = length(var.repository_policy_arns)
  role       = aws_iam_role.lambda.name
  policy_arn = var.repository_policy_arns[count.index]
}

resource "aws_iam_role_policy_attachment" "vpc" {
  count      = local.in_vpc ? 1 : 0
  role       = aws_iam_role.lambda.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

resource "aws_lambda_function" "this" {
  # checkov:skip=CKV_AWS_272:Code signing applies only to .zip packages; this function is a container image, whose integrity comes from the immutable ECR tag/digest.
  # checkov:skip=CKV_AWS_117:A VPC is optional (var.subnet_ids, required for EFS sources); the function otherwise talks only to AWS APIs over TLS, and forcing a VPC would force NAT gateway or endpoint costs on every user.
  function_name = var.name
  description   = "Packvault scheduled job for ${var.repository_url}"
  role          = aws_iam_role.lambda.arn
  package_type  = "Image"
  image_uri     = var.image_uri
  architectures = [var.architecture]
  memory_size   = var.memory_size
  timeout       = var.timeout
  kms_key_arn   = local.kms_key_arn

  # One run at a time: two concurrent runs of the same job would only compete for the same repository locks.
  reserved_concurrent_executions = 1

  ephemeral_storage {
    size = var.ephemeral_storage_mb
  }

  environment {
    variables = local.environment
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.this.name
  }

  tracing_config {
    mode = "Active"
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.dead_letter.arn
  }

  dynamic "vpc_config" {
    for_each = local.in_vpc ? [1] : []
    content {
      subnet_ids         = var.subnet_ids
      security_group_ids = var.security_group_ids
    }
  }

  dynamic "file_system_config" {
    for_each = var.efs_access_point_arn == null ? [] : [var.efs_access_point_arn]
    content {
      arn              = file_system_config.value
      local_mount_path = var.efs_mount_path
    }
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.efs_access_point_arn == null || length(var.subnet_ids) > 0
      error_message = "efs_access_point_arn requires subnet_ids (EFS is reached through the VPC)."
    }
    precondition {
      condition     = length(var.sources) > 0 || var.prune != null || var.compact
      error_message = "The job does nothing: set sources, prune or compact."
    }
    precondition {
      condition     = (var.object_lock_mode == null) == (var.object_lock_retention == null)
      error_message = "object_lock_mode and object_lock_retention go together: set both, or neither."
    }
    precondition {
      condition     = var.repository_bucket_arn != null || (var.object_lock_mode == null && !var.restore_cold_packs)
      error_message = "object_lock_mode and restore_cold_packs need repository_bucket_arn (the permissions are scoped to it)."
    }
  }

  depends_on = [
    aws_iam_role_policy.lambda,
    aws_iam_role_policy_attachment.repository,
    aws_iam_role_policy_attachment.vpc,
  ]
}

# Lambda's own retries of the asynchronous invocation the scheduler makes.
resource "aws_lambda_function_event_invoke_config" "this" {
  function_name                = aws_lambda_function.this.function_name
  maximum_retry_attempts       = var.max_retry_attempts
  maximum_event_age_in_seconds = 21600
}

# ---------------------------------------------------------------------------------------------------------------
# The schedule.

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    # Only schedules of this account may use the role (confused-deputy protection).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "packvault-${var.name}-scheduler"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "InvokeJob"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.this.arn]
  }

  statement {
    sid       = "SendToDeadLetterQueue"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letter.arn]
  }

  statement {
    sid       = "UseJobKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "packvault-schedule"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

resource "aws_scheduler_schedule" "this" {
  name                         = "packvault-${var.name}"
  description                  = "Runs the Packvault job ${var.name}"
  schedule_expression          = var.schedule_expression
  schedule_expression_timezone = var.schedule_timezone
  state                        = var.schedule_enabled ? "ENABLED" : "DISABLED"
  kms_key_arn                  = local.kms_key_arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.this.arn
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode({ source = "packvault.scheduler", job = var.name })

    retry_policy {
      maximum_retry_attempts       = var.max_retry_attempts
      maximum_event_age_in_seconds = 21600
    }

    dead_letter_config {
      arn = aws_sqs_queue.dead_letter.arn
    }
  }

  depends_on = [aws_iam_role_policy.scheduler]
}
