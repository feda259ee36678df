# The bucket that holds one or more Packvault repositories.
#
# Packvault already encrypts and authenticates every object on the client (only config/ is plaintext, and it holds
# no secret), so the controls here are defence in depth: no public access, TLS only, encryption at rest, and
# versioning so that an overwrite or delete can be undone within a window.

locals {
  # Key prefix of the repository with a trailing slash, or "" for the bucket root.
  key_prefix = var.repository_prefix == "" ? "" : "${var.repository_prefix}/"
  sse_kms    = var.kms_key_arn != null
}

resource "aws_s3_bucket" "this" {
  # checkov:skip=CKV_AWS_144:Cross-region replication doubles the storage bill and needs a second bucket and role; a second copy of a backup is a deployment decision (e.g. a second repository), not something this module forces.
  # checkov:skip=CKV2_AWS_62:Event notifications have no consumer here; Packvault never reacts to bucket events.
  # checkov:skip=CKV_AWS_145:SSE-KMS is supported through var.kms_key_arn. SSE-S3 is the default on purpose: the contents are already encrypted client-side by Packvault, and SSE-KMS adds a KMS request per object GET/PUT (cost and throttling) for no added confidentiality.
  # checkov:skip=CKV_AWS_18:Server access logging is supported through var.access_log_bucket; it needs a separate log bucket that this module does not own, so it cannot be on by default.
  bucket              = var.bucket_name
  force_destroy       = var.force_destroy
  object_lock_enabled = var.object_lock
  tags                = var.tags

  lifecycle {
    precondition {
      condition     = !var.object_lock || var.versioning_enabled
      error_message = "object_lock requires versioning_enabled = true."
    }
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# ACLs off: the bucket owner owns every object, access is decided by policies alone.
resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.sse_kms ? "aws:kms" : "AES256"
      kms_master_key_id = var.kms_key_arn
    }
    # An S3 Bucket Key cuts the KMS requests (and their cost) by orders of magnitude for SSE-KMS.
    bucket_key_enabled = local.sse_kms
  }
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = var.versioning_enabled ? "Enabled" : "Suspended"
  }
}

# With object_lock there is deliberately no aws_s3_bucket_object_lock_configuration (no default retention):
# Packvault sets the retention per object, so objects compact no longer needs can run out and be deleted, and
# lock records (locks/) carry none at all.

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  # A writer that crashes mid-upload leaves invisible, billed parts behind; Packvault's own clean-up can only see
  # complete objects, so the bucket removes the parts.
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  # With versioning, compact's deletes only hide objects. This rule bounds the undo window so the space is
  # eventually freed, and drops delete markers that no longer hide anything.
  rule {
    id     = "expire-noncurrent-versions"
    status = var.versioning_enabled ? "Enabled" : "Disabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  # A static rule that is disabled when unused (rather than a dynamic block) keeps the rule list the same shape
  # for every input, which static analysers read correctly.
  rule {
    id     = "data-packs-storage-class"
    status = var.data_packs_transition == null ? "Disabled" : "Enabled"
    filter {
      prefix = "${local.key_prefix}packs/data/"
    }
    transition {
      days          = try(var.data_packs_transition.days, 30)
      storage_class = try(var.data_packs_transition.storage_class, "STANDARD_IA")
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_logging" "this" {
  count         = var.access_log_bucket == null ? 0 : 1
  bucket        = aws_s3_bucket.this.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3-access/${var.bucket_name}/"
}

# Refuse every request that does not arrive over TLS, whoever sends it and whatever IAM allows.
data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.bucket.json

  # A bucket policy is refused while the public access block is still being created.
  depends_on = [aws_s3_bucket_public_access_block.this]
}
