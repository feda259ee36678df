variable "region" {
  description = "AWS region for every resource."
  type        = string
  default     = "eu-central-1"
}

variable "bucket_name" {
  description = "Name of the repository bucket (globally unique)."
  type        = string
}

variable "image_tag" {
  description = "Tag of the Packvault Lambda image pushed to the ECR repository this example creates."
  type        = string
  default     = "0.1.0"
}

variable "source_url" {
  description = "The bucket (and prefix) to back up, e.g. s3://my-data-lake/media."
  type        = string
}

variable "parts" {
  description = "Key ranges per run (one Lambda-run part each, continued across 15-minute invocations)."
  type        = number
  default     = 256
}

variable "max_concurrency" {
  description = "Parts running at the same time."
  type        = number
  default     = 100
}
