output "bucket_name" {
  description = "Name of the repository bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the repository bucket."
  value       = aws_s3_bucket.this.arn
}

output "repository_url" {
  description = "Packvault repository URL for this bucket and prefix (PACKVAULT_REPO / the CLI's location)."
  value       = var.repository_prefix == "" ? "s3://${aws_s3_bucket.this.id}" : "s3://${aws_s3_bucket.this.id}/${var.repository_prefix}"
}

output "writer_policy_json" {
  description = "IAM policy JSON for a backup writer (no deletes except its own locks)."
  value       = data.aws_iam_policy_document.writer.json
}

output "maintainer_policy_json" {
  description = "IAM policy JSON for a maintainer (prune, compact, init)."
  value       = data.aws_iam_policy_document.maintainer.json
}

output "writer_policy_arn" {
  description = "ARN of the managed writer policy (null when create_iam_policies = false)."
  value       = one(aws_iam_policy.writer[*].arn)
}

output "maintainer_policy_arn" {
  description = "ARN of the managed maintainer policy (null when create_iam_policies = false)."
  value       = one(aws_iam_policy.maintainer[*].arn)
}
