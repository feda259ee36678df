variable "name" {
  description = "Name of the job; used for the function, schedule, role, log group and secret."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9-_]{1,48}$", var.name))
    error_message = "name must be 1-48 characters of letters, digits, '-' and '_'."
  }
}

variable "image_uri" {
  description = "ECR image URI (with tag or digest) built from image/Dockerfile; it runs packvault.serverless.handler."
  type        = string
}

variable "repository_url" {
  description = "Packvault repository URL, e.g. s3://bucket/prefix (becomes PACKVAULT_REPO)."
  type        = string

  validation {
    condition     = startswith(var.repository_url, "s3://")
    error_message = "repository_url must be an s3:// URL."
  }
}

variable "sources" {
  description = <<-EOT
    What to back up (becomes PACKVAULT_SOURCES as a JSON list): paths on a mounted EFS file system or s3:// source
    locations. Empty = no backup, only the maintenance steps (prune/compact) run.
  EOT
  type        = list(string)
  default     = []
}

variable "prune" {
  description = <<-EOT
    Retention policy applied after the backup (becomes PACKVAULT_PRUNE as JSON), e.g.
    { keep_daily = 7, keep_weekly = 4, keep_monthly = 12 }. null = no pruning. Pruning deletes, so the function
    then needs the maintainer policy.
  EOT
  type        = map(number)
  default     = null
}

variable "compact" {
  description = "Run compact (garbage collection) after the backup/prune (PACKVAULT_COMPACT=1). Needs the maintainer policy."
  type        = bool
  default     = false
}

variable "schedule_expression" {
  description = "EventBridge Scheduler expression: cron(...), rate(...) or at(...)."
  type        = string
  default     = "cron(30 2 * * ? *)"
}

variable "schedule_timezone" {
  description = "IANA time zone the schedule expression is evaluated in."
  type        = string
  default     = "UTC"
}

variable "schedule_enabled" {
  description = "Whether the schedule fires (false keeps everything deployed but paused)."
  type        = bool
  default     = true
}

variable "repository_policy_arns" {
  description = <<-EOT
    IAM policy ARNs attached to the function's role for repository access: the repository-bucket module's
    writer_policy_arn for a backup-only job, maintainer_policy_arn for a job that prunes or compacts, plus any
    read-only policies for s3:// sources.
  EOT
  type        = list(string)
}

variable "passphrase_secret_arn" {
  description = <<-EOT
    ARN of an existing Secrets Manager secret holding the repository passphrase. null = the module creates an
    empty secret; put the passphrase into it out of band (so it never lands in Terraform state).
  EOT
  type        = string
  default     = null
}

variable "passphrase_kms_key_arn" {
  description = <<-EOT
    KMS key the existing passphrase secret is encrypted with, when that is not this job's key (e.g. a maintenance
    job sharing the backup job's secret: pass that job's kms_key_arn output). The function may decrypt with it.
  EOT
  type        = string
  default     = null
}

variable "kms_key_arn" {
  description = <<-EOT
    Customer managed KMS key used for the secret, the logs, the function environment, the schedule and the
    dead-letter queue. null = the module creates one (with rotation).
  EOT
  type        = string
  default     = null
}

variable "memory_size" {
  description = "Function memory in MiB; CPU share grows with it, and packs of 32 MiB are built in parallel."
  type        = number
  default     = 2048
}

variable "timeout" {
  description = "Function timeout in seconds (Lambda allows at most 900). An interrupted backup resumes next time."
  type        = number
  default     = 900

  validation {
    condition     = var.timeout >= 30 && var.timeout <= 900
    error_message = "timeout must be between 30 and 900 seconds."
  }
}

variable "ephemeral_storage_mb" {
  description = "Size of /tmp in MiB (512-10240); it holds Packvault's chunk index cache and files cache."
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

variable "log_retention_days" {
  description = "Retention of the function's CloudWatch log group, in days."
  type        = number
  default     = 365
}

variable "max_retry_attempts" {
  description = "Retries of a failed run (both by the scheduler and by Lambda's async invocation). Re-running a backup is safe."
  type        = number
  default     = 1

  validation {
    condition     = var.max_retry_attempts >= 0 && var.max_retry_attempts <= 2
    error_message = "max_retry_attempts must be 0, 1 or 2."
  }
}

variable "subnet_ids" {
  description = "Subnets to run the function in (needed for EFS). Empty = no VPC."
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Security groups of the function when subnet_ids is set."
  type        = list(string)
  default     = []
}

variable "efs_access_point_arn" {
  description = "Optional EFS access point to mount (read-only use) at efs_mount_path; requires subnet_ids."
  type        = string
  default     = null
}

variable "efs_mount_path" {
  description = "Where the EFS access point is mounted in the function (must start with /mnt/)."
  type        = string
  default     = "/mnt/data"

  validation {
    condition     = startswith(var.efs_mount_path, "/mnt/")
    error_message = "efs_mount_path must start with /mnt/."
  }
}

variable "extra_environment" {
  description = "Additional environment variables for the function (e.g. PACKVAULT_* tuning). No secrets here."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}

variable "object_lock_mode" {
  description = <<-EOT
    S3 Object Lock of the repository (PACKVAULT_OBJECT_LOCK): "governance" or "compliance", with object_lock_retention.
    The job then writes every object with that retention (the repository's recorded mode must agree, else the job
    fails in one line), and its compact extends the retention of every live object. null = no Object Lock settings
    (a repository initialised with Object Lock still applies its own). Needs repository_bucket_arn.
  EOT
  type        = string
  default     = null

  validation {
    condition     = var.object_lock_mode == null || contains(["governance", "compliance"], coalesce(var.object_lock_mode, "-"))
    error_message = "object_lock_mode must be \"governance\" or \"compliance\"."
  }
}

variable "object_lock_retention" {
  description = "With object_lock_mode: how long each object is retained from its write, e.g. \"30d\" (PACKVAULT_RETENTION)."
  type        = string
  default     = null

  validation {
    condition     = var.object_lock_retention == null || can(regex("^[0-9]+(s|min|h|d|w|m|y)$", coalesce(var.object_lock_retention, "-")))
    error_message = "object_lock_retention must be a duration such as 30d, 12w or 1y."
  }
}

variable "retention_extension_period" {
  description = <<-EOT
    The retention compact's extension gives each live object (PACKVAULT_RETENTION_EXTEND), e.g. "60d"; each object
    is extended once less than half of it is left, at one PutObjectRetention per live object per half period
    (docs/s3-backend.md). null = the repository's retention.
  EOT
  type        = string
  default     = null

  validation {
    condition     = var.retention_extension_period == null || can(regex("^[0-9]+(s|min|h|d|w|m|y)$", coalesce(var.retention_extension_period, "-")))
    error_message = "retention_extension_period must be a duration such as 60d."
  }
}

variable "restore_cold_packs" {
  description = <<-EOT
    Allow the job to restore cold data packs (S3 GLACIER/DEEP_ARCHIVE; s3:RestoreObject) for {"action": "extract"}
    invocations. Needs repository_bucket_arn.
  EOT
  type        = bool
  default     = false
}

variable "repository_bucket_arn" {
  description = "ARN of the repository bucket (repository-bucket module output); needed by object_lock_mode and restore_cold_packs."
  type        = string
  default     = null
}
