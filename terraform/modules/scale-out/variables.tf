variable "name" {
  description = "Name of the scale-out job; used for the state machine, the three functions, roles, log groups and the schedule."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9-_]{1,40}$", var.name))
    error_message = "name must be 1-40 characters of letters, digits, '-' and '_' (the functions append -plan, -part, -merge)."
  }
}

variable "image_uri" {
  description = "ECR image URI (with tag or digest) built from terraform/modules/scheduled-backup/image/Dockerfile; the functions run packvault.serverless.scaleout.handler from it."
  type        = string

  validation {
    condition     = can(regex("^[^\\s\"]+[:@][^\\s\"]+$", var.image_uri))
    error_message = "image_uri must be an image reference with a tag or digest (repository:tag or repository@sha256:...)."
  }
}

variable "repository_url" {
  description = "Packvault repository URL, s3://bucket/prefix (becomes PACKVAULT_REPO). Parts and merge write into it concurrently."
  type        = string

  validation {
    condition     = can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^?*\"\\\\]*)?$", var.repository_url))
    error_message = "repository_url must be s3://bucket or s3://bucket/prefix (no query string, '*', quotes or backslashes)."
  }
}

variable "source_url" {
  description = "The bucket (and optional prefix) to back up, s3://bucket[/prefix]. The plan splits it into key ranges."
  type        = string

  validation {
    condition     = can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^?*\"\\\\]*)?$", var.source_url))
    error_message = "source_url must be s3://bucket or s3://bucket/prefix (no query string, '*', quotes or backslashes: it is embedded in the ASL and in IAM resource patterns)."
  }
}

variable "parts" {
  description = "Number of key ranges the plan cuts the source into (one child workflow each). More parts = more parallelism and more merge input."
  type        = number
  default     = 64

  validation {
    condition     = var.parts >= 1 && var.parts <= 100000 && floor(var.parts) == var.parts
    error_message = "parts must be a whole number between 1 and 100000."
  }
}

variable "max_concurrency" {
  description = "How many parts run at the same time (the Distributed Map's MaxConcurrency, also the part function's reserved concurrency)."
  type        = number
  default     = 40

  validation {
    condition     = var.max_concurrency >= 1 && var.max_concurrency <= 10000 && floor(var.max_concurrency) == var.max_concurrency
    error_message = "max_concurrency must be a whole number between 1 and 10000 (the Distributed Map limit)."
  }
}

variable "tolerated_failure_percentage" {
  description = <<-EOT
    Share of parts (0-100) that may fail after all their retries without failing the Map at once. 0 = the first
    failed part stops the run. Above 0 the remaining parts still finish (their data is stored and deduplicated by
    the next run), but the merge refuses an incomplete set of parts, so the execution still fails, at the merge.
  EOT
  type        = number
  default     = 0

  validation {
    condition     = var.tolerated_failure_percentage >= 0 && var.tolerated_failure_percentage <= 100
    error_message = "tolerated_failure_percentage must be between 0 and 100."
  }
}

variable "part_max_attempts" {
  description = "Retries of a part that stopped at its deadline (PartIncomplete). Each attempt continues where the last checkpoint was; attempts x timeout bounds the time one part may take."
  type        = number
  default     = 96

  validation {
    condition     = var.part_max_attempts >= 1 && var.part_max_attempts <= 10000 && floor(var.part_max_attempts) == var.part_max_attempts
    error_message = "part_max_attempts must be a whole number between 1 and 10000."
  }
}

variable "part_retry_interval_seconds" {
  description = "Pause before a part that stopped at its deadline is continued (no backoff: the part is not failing, it is unfinished)."
  type        = number
  default     = 1

  validation {
    condition     = var.part_retry_interval_seconds >= 1 && var.part_retry_interval_seconds <= 300 && floor(var.part_retry_interval_seconds) == var.part_retry_interval_seconds
    error_message = "part_retry_interval_seconds must be a whole number between 1 and 300."
  }
}

variable "work_bucket_name" {
  description = <<-EOT
    Existing bucket for the plans and the Map's result files (small JSON objects), e.g. the repository bucket:
    use a work_prefix outside the repository prefix. Give it a lifecycle expiry for work_prefix.
  EOT
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.work_bucket_name))
    error_message = "work_bucket_name must be a valid S3 bucket name."
  }
}

variable "work_prefix" {
  description = "Key prefix under which plans (plans/) and Map results (results/) are written. Must end with '/'; null = packvault-scale-out/<name>/."
  type        = string
  default     = null

  validation {
    condition     = var.work_prefix == null || can(regex("^[A-Za-z0-9!_./-]+/$", var.work_prefix))
    error_message = "work_prefix must end with '/' and contain only letters, digits and !_./- (it is embedded in ASL intrinsic functions and IAM resource patterns)."
  }
}

variable "work_bucket_kms_key_arn" {
  description = "KMS key the work bucket encrypts objects with (SSE-KMS), if any: the plan function, the state machine and nobody else may use it."
  type        = string
  default     = null

  validation {
    condition     = var.work_bucket_kms_key_arn == null || can(regex("^arn:[^:]+:kms:", var.work_bucket_kms_key_arn))
    error_message = "work_bucket_kms_key_arn must be a KMS key ARN (arn:...:kms:...) or null."
  }
}

variable "source_kms_key_arn" {
  description = "KMS key the source bucket's objects are encrypted with (SSE-KMS), if any: the part function may decrypt with it."
  type        = string
  default     = null

  validation {
    condition     = var.source_kms_key_arn == null || can(regex("^arn:[^:]+:kms:", var.source_kms_key_arn))
    error_message = "source_kms_key_arn must be a KMS key ARN (arn:...:kms:...) or null."
  }
}

variable "worker_policy_arns" {
  description = <<-EOT
    IAM policies attached to the part function's role for repository access: the repository-bucket module's
    writer_policy_arn (create-only). Source read access is granted by this module from source_url.
  EOT
  type        = list(string)

  validation {
    condition     = length(var.worker_policy_arns) > 0 && alltrue([for arn in var.worker_policy_arns : can(regex("^arn:[^:]+:iam::", arn))])
    error_message = "worker_policy_arns must contain the repository writer policy (IAM policy ARNs)."
  }
}

variable "merge_policy_arns" {
  description = <<-EOT
    IAM policies attached to the merge function's role: the repository writer policy. The module adds only what
    a merge needs beyond it: soft-deleting archives/ entries (the parts'), never anything else.
  EOT
  type        = list(string)

  validation {
    condition     = length(var.merge_policy_arns) > 0 && alltrue([for arn in var.merge_policy_arns : can(regex("^arn:[^:]+:iam::", arn))])
    error_message = "merge_policy_arns must contain the repository writer policy (IAM policy ARNs)."
  }
}

variable "passphrase_secret_arn" {
  description = <<-EOT
    ARN of an existing Secrets Manager secret holding the repository passphrase (e.g. the scheduled-backup
    module's output). null = the module creates an empty secret; put the passphrase into it out of band.
  EOT
  type        = string
  default     = null

  validation {
    condition     = var.passphrase_secret_arn == null || can(regex("^arn:[^:]+:secretsmanager:", var.passphrase_secret_arn))
    error_message = "passphrase_secret_arn must be a Secrets Manager secret ARN or null."
  }
}

variable "passphrase_kms_key_arn" {
  description = "KMS key the existing passphrase secret is encrypted with, when that is not this module's key. The part and merge functions may decrypt with it."
  type        = string
  default     = null

  validation {
    condition     = var.passphrase_kms_key_arn == null || can(regex("^arn:[^:]+:kms:", var.passphrase_kms_key_arn))
    error_message = "passphrase_kms_key_arn must be a KMS key ARN (arn:...:kms:...) or null."
  }
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the secret, logs, function environments, schedule, dead-letter queue and execution data. null = the module creates one (with rotation)."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:[^:]+:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:...:kms:...) or null."
  }
}

variable "archive_prefix" {
  description = "Archive name prefix (PACKVAULT_ARCHIVE_PREFIX): archives are <prefix>-<period stamp>, as for the scheduled job."
  type        = string
  default     = null
}

variable "archive_period" {
  description = "Period an archive stands for (PACKVAULT_ARCHIVE_PERIOD): hourly, daily, weekly or monthly."
  type        = string
  default     = "daily"

  validation {
    condition     = contains(["hourly", "daily", "weekly", "monthly"], var.archive_period)
    error_message = "archive_period must be hourly, daily, weekly or monthly."
  }
}

variable "memory_size" {
  description = "Memory of the part function in MiB (CPU grows with it). The plan and merge functions get plan_merge_memory_size."
  type        = number
  default     = 2048

  validation {
    condition     = var.memory_size >= 512 && var.memory_size <= 10240
    error_message = "memory_size must be between 512 and 10240."
  }
}

variable "plan_merge_memory_size" {
  description = "Memory of the plan and merge functions in MiB."
  type        = number
  default     = 1024

  validation {
    condition     = var.plan_merge_memory_size >= 256 && var.plan_merge_memory_size <= 10240
    error_message = "plan_merge_memory_size must be between 256 and 10240."
  }
}

variable "timeout" {
  description = "Timeout of each function in seconds (Lambda allows at most 900). A part stops itself before it and is continued by the next attempt."
  type        = number
  default     = 900

  validation {
    condition     = var.timeout >= 60 && var.timeout <= 900
    error_message = "timeout must be between 60 and 900 seconds."
  }
}

variable "ephemeral_storage_mb" {
  description = "Size of each function's /tmp in MiB (512-10240); it holds the chunk index cache."
  type        = number
  default     = 4096

  validation {
    condition     = var.ephemeral_storage_mb >= 512 && var.ephemeral_storage_mb <= 10240
    error_message = "ephemeral_storage_mb must be between 512 and 10240."
  }
}

variable "architecture" {
  description = "Instruction set of the image: x86_64 or arm64."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "schedule_expression" {
  description = "EventBridge Scheduler expression that starts an execution: cron(...), rate(...) or at(...). Keep it longer than a run takes."
  type        = string
  default     = "cron(0 1 * * ? *)"

  validation {
    condition     = can(regex("^(cron|rate|at)\\(.+\\)$", var.schedule_expression))
    error_message = "schedule_expression must be cron(...), rate(...) or at(...)."
  }
}

variable "schedule_timezone" {
  description = "IANA time zone the schedule expression is evaluated in."
  type        = string
  default     = "UTC"
}

variable "schedule_enabled" {
  description = "Whether the schedule fires (false keeps everything deployed but paused; start executions by hand)."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Retention of the functions' and the state machine's CloudWatch log groups, in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, ... 365, 400, ... 3653)."
  }
}

variable "state_machine_log_level" {
  description = "Execution history sent to CloudWatch Logs: ALL, ERROR or FATAL. ALL costs a log event per state transition (per part, several)."
  type        = string
  default     = "ERROR"

  validation {
    condition     = contains(["ALL", "ERROR", "FATAL"], var.state_machine_log_level)
    error_message = "state_machine_log_level must be ALL, ERROR or FATAL."
  }
}

variable "extra_environment" {
  description = "Additional environment variables for the three functions (e.g. PACKVAULT_* tuning). No secrets here; they cannot override the repository or the secret."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
