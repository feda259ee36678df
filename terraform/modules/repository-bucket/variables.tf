variable "bucket_name" {
  description = "Name of the S3 bucket that holds the Packvault repository (globally unique)."
  type        = string
}

variable "repository_prefix" {
  description = <<-EOT
    Key prefix of the repository inside the bucket, without leading or trailing slash ("" = bucket root).
    Must match the prefix in the repository URL (s3://BUCKET/PREFIX). The IAM policies are scoped to it, so
    several repositories with separate credentials can share one bucket.
  EOT
  type        = string
  default     = ""

  validation {
    condition     = !startswith(var.repository_prefix, "/") && !endswith(var.repository_prefix, "/")
    error_message = "repository_prefix must not start or end with a slash."
  }
}

variable "kms_key_arn" {
  description = "KMS key for default bucket encryption (SSE-KMS). null = SSE-S3 (AES256), which costs nothing per request."
  type        = string
  default     = null
}

variable "versioning_enabled" {
  description = <<-EOT
    Keep previous versions of overwritten or deleted objects. Recommended: a credential that may only PUT can still
    overwrite an object with garbage; with versioning the old version survives (the policies grant no
    s3:DeleteObjectVersion). Noncurrent versions expire after noncurrent_version_expiration_days.
  EOT
  type        = bool
  default     = true
}

variable "noncurrent_version_expiration_days" {
  description = "Days a deleted/overwritten object version is kept before lifecycle removes it (the undo window)."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be at least 1."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which parts of an unfinished multipart upload (a crashed writer) are removed."
  type        = number
  default     = 7

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1
    error_message = "abort_incomplete_multipart_upload_days must be at least 1."
  }
}

variable "data_packs_transition" {
  description = <<-EOT
    Optional lifecycle transition of data packs (PREFIX/packs/data/) to a cheaper storage class. Only classes with
    instant retrieval are allowed: compact and restore read data packs with ranged GETs and cannot wait for a
    Glacier restore. Example: { days = 30, storage_class = "STANDARD_IA" }.
  EOT
  type = object({
    days          = number
    storage_class = string
  })
  default = null

  validation {
    condition = var.data_packs_transition == null ? true : contains(
      ["STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"], var.data_packs_transition.storage_class
    )
    error_message = "data_packs_transition.storage_class must be STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING or GLACIER_IR."
  }
}

variable "object_lock" {
  description = <<-EOT
    Create the bucket with S3 Object Lock enabled (requires versioning_enabled = true; only possible when the
    bucket is created). No default retention is set: Packvault gives each object its own retention
    (`packvault init --object-lock governance|compliance --retention 30d`) and extends it for live objects only
    (`packvault retention extend`, run by compact), so dead packs become deletable once their retention ends.
    Both policies then get s3:PutObjectRetention/s3:GetObjectRetention (extending is allowed, shortening needs
    s3:BypassGovernanceRetention, which neither has) and s3:GetBucketObjectLockConfiguration.
  EOT
  type        = bool
  default     = false
}

variable "access_log_bucket" {
  description = "Optional bucket that receives S3 server access logs for this bucket (null = no access logging)."
  type        = string
  default     = null
}

variable "create_iam_policies" {
  description = "Create the managed IAM policies packvault-writer and packvault-maintainer (the JSON is output either way)."
  type        = bool
  default     = true
}

variable "iam_policy_name_prefix" {
  description = "Name prefix of the created IAM policies (default: the bucket name)."
  type        = string
  default     = null
}

variable "writer_require_conditional_writes" {
  description = <<-EOT
    Require the writer's PUT and CompleteMultipartUpload requests to carry If-None-Match, so a writer credential
    can create objects but never overwrite one (an overwrite destroys a backup as surely as a delete).
    Packvault writes every object the writer needs create-only, so this is safe with AWS S3. Turn it off only
    for S3-compatible services whose IAM does not evaluate the s3:if-none-match condition key.
  EOT
  type        = bool
  default     = true
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete a non-empty bucket. Keep false for real repositories."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
