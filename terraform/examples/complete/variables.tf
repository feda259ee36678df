variable "region" {
  description = "AWS region for every resource."
  type        = string
  default     = "eu-central-1"
}

variable "bucket_name" {
  description = "Name of the repository bucket (globally unique)."
  type        = string
}

variable "repository_prefix" {
  description = "Key prefix of the repository in the bucket."
  type        = string
  default     = "main"
}

variable "image_tag" {
  description = "Tag of the Packvault Lambda image pushed to the ECR repository this example creates."
  type        = string
  default     = "0.1.0"
}

variable "sources" {
  description = "What the backup job backs up (PACKVAULT_SOURCES), e.g. [\"s3://my-data-bucket/documents\"]."
  type        = list(string)
}

variable "source_read_policy_arns" {
  description = "IAM policies that let the backup job read its sources (e.g. s3:GetObject/ListBucket on a data bucket)."
  type        = list(string)
  default     = []
}
