# Least-privilege policies for the two kinds of Packvault credentials, scoped to the repository prefix.
#
# writer     - runs `packvault create` (and list/extract). It can read everything and create new objects, and the
#              only thing it may delete is its own lock objects in locks/. With writer_require_conditional_writes
#              (the default) every PUT must carry If-None-Match, so it can only create objects, never overwrite
#              one: a stolen writer credential can add archives (or garbage), but it can neither delete nor
#              overwrite existing packs, index fragments or archive entries. Turned off, it could overwrite
#              them, which destroys backups as surely as deleting. It cannot write keys/ or config/ either
#              (only init, passphrase changes and compact touch those), so it cannot replace the sealed key or
#              the repository configuration. Archive deletion and prune are soft deletes
#              (archives/X -> archives/X.del = copy + delete) and therefore need the maintainer.
# maintainer - runs init, delete, prune, compact, check --repair and key changes: read, write and delete
#              everywhere under the prefix.
#
# Neither may delete object versions, change versioning, lifecycle, Object Lock or the bucket policy, so with
# versioning on, even a maintainer credential can only hide data for the noncurrent-version window.

locals {
  object_arn_prefix = "${aws_s3_bucket.this.arn}/${local.key_prefix}"
  policy_prefix     = coalesce(var.iam_policy_name_prefix, var.bucket_name)

  # Namespaces the writer creates objects in (see the repository layout in the design doc).
  writer_put_namespaces = ["locks", "archives", "names", "index", "packs"]
  writer_put_resources  = [for ns in local.writer_put_namespaces : "${local.object_arn_prefix}${ns}/*"]
  # What the writer creates with an Object Lock retention: everything but its lock records.
  writer_locked_namespaces = ["archives", "names", "index", "packs"]
  writer_locked_resources  = [for ns in local.writer_locked_namespaces : "${local.object_arn_prefix}${ns}/*"]
}

data "aws_iam_policy_document" "writer" {
  # HeadBucket carries no s3:prefix key, hence IfExists; a listing reveals only key names (content hashes).
  statement {
    sid       = "ListRepository"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]

    dynamic "condition" {
      for_each = local.key_prefix == "" ? [] : [local.key_prefix]
      content {
        test     = "StringLikeIfExists"
        variable = "s3:prefix"
        values   = [condition.value, "${condition.value}*"]
      }
    }
  }

  statement {
    sid       = "ReadRepository"
    actions   = ["s3:GetObject"]
    resources = ["${local.object_arn_prefix}*"]
  }

  # Multipart bookkeeping for the writer's own uploads; neither action can touch a completed object.
  statement {
    sid       = "MultipartUploads"
    actions   = ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = local.writer_put_resources
  }

  dynamic "statement" {
    for_each = var.writer_require_conditional_writes ? [] : [1]
    content {
      sid       = "CreateObjects"
      actions   = ["s3:PutObject"]
      resources = local.writer_put_resources
    }
  }

  # With enforcement: whole-object PUTs and CompleteMultipartUpload only with If-None-Match (create-only) ...
  dynamic "statement" {
    for_each = var.writer_require_conditional_writes ? [1] : []
    content {
      sid       = "CreateObjectsOnlyIfAbsent"
      actions   = ["s3:PutObject"]
      resources = local.writer_put_resources
      condition {
        test     = "Null"
        variable = "s3:if-none-match"
        values   = ["false"]
      }
    }
  }

  # ... while CreateMultipartUpload and UploadPart, which cannot carry the header, stay allowed.
  dynamic "statement" {
    for_each = var.writer_require_conditional_writes ? [1] : []
    content {
      sid       = "UploadParts"
      actions   = ["s3:PutObject"]
      resources = local.writer_put_resources
      condition {
        test     = "Bool"
        variable = "s3:ObjectCreationOperation"
        values   = ["false"]
      }
    }
  }

  statement {
    sid       = "RemoveOwnLocks"
    actions   = ["s3:DeleteObject"]
    resources = ["${local.object_arn_prefix}locks/*"]
  }

  # Object Lock (var.object_lock): writes carry a retention (s3:PutObjectRetention), compact and
  # `packvault retention extend` read and extend it; shortening it would need s3:BypassGovernanceRetention.
  dynamic "statement" {
    for_each = var.object_lock ? [local.writer_locked_resources] : []
    content {
      sid       = "ObjectLockRetention"
      actions   = ["s3:PutObjectRetention", "s3:GetObjectRetention"]
      resources = statement.value
    }
  }

  dynamic "statement" {
    for_each = var.object_lock ? [aws_s3_bucket.this.arn] : []
    content {
      sid       = "ObjectLockConfiguration"
      actions   = ["s3:GetBucketObjectLockConfiguration"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = local.sse_kms ? [var.kms_key_arn] : []
    content {
      sid       = "UseBucketKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
}

data "aws_iam_policy_document" "maintainer" {
  statement {
    sid       = "ListRepository"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]

    dynamic "condition" {
      for_each = local.key_prefix == "" ? [] : [local.key_prefix]
      content {
        test     = "StringLikeIfExists"
        variable = "s3:prefix"
        values   = [condition.value, "${condition.value}*"]
      }
    }
  }

  statement {
    sid       = "ReadRepository"
    actions   = ["s3:GetObject"]
    resources = ["${local.object_arn_prefix}*"]
  }

  statement {
    sid       = "WriteRepository"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${local.object_arn_prefix}*"]
  }

  # prune/delete (soft delete: copy + delete of archives/), compact (drops dead packs and index fragments).
  statement {
    sid       = "DeleteRepositoryObjects"
    actions   = ["s3:DeleteObject"]
    resources = ["${local.object_arn_prefix}*"]
  }

  # Object Lock (var.object_lock): writes carry a retention (s3:PutObjectRetention), compact and
  # `packvault retention extend` read and extend it; shortening it would need s3:BypassGovernanceRetention.
  dynamic "statement" {
    for_each = var.object_lock ? [["${local.object_arn_prefix}*"]] : []
    content {
      sid       = "ObjectLockRetention"
      actions   = ["s3:PutObjectRetention", "s3:GetObjectRetention"]
      resources = statement.value
    }
  }

  dynamic "statement" {
    for_each = var.object_lock ? [aws_s3_bucket.this.arn] : []
    content {
      sid       = "ObjectLockConfiguration"
      actions   = ["s3:GetBucketObjectLockConfiguration"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = local.sse_kms ? [var.kms_key_arn] : []
    content {
      sid       = "UseBucketKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_policy" "writer" {
  count       = var.create_iam_policies ? 1 : 0
  name        = "${local.policy_prefix}-packvault-writer"
  description = "Packvault backup writer on s3://${var.bucket_name}/${local.key_prefix}: read, create, delete only its locks"
  policy      = data.aws_iam_policy_document.writer.json
  tags        = var.tags
}

resource "aws_iam_policy" "maintainer" {
  count       = var.create_iam_policies ? 1 : 0
  name        = "${local.policy_prefix}-packvault-maintainer"
  description = "Packvault maintainer on s3://${var.bucket_name}/${local.key_prefix}: init, prune, compact (may delete)"
  policy      = data.aws_iam_policy_document.maintainer.json
  tags        = var.tags
}
