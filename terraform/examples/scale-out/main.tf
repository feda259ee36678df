# Back up a large bucket with Step Functions: a repository bucket and a nightly scale-out run that plans key
# ranges, backs them up in parallel (Lambda) and merges them into one archive per night.
#
# Bootstrapping order (the functions need an image, the image needs the ECR repository):
#   1. terraform apply -target=aws_ecr_repository.packvault
#   2. docker build -f terraform/modules/scheduled-backup/image/Dockerfile -t <ecr_repository_url>:<image_tag> .
#      docker push <ecr_repository_url>:<image_tag>
#   3. terraform apply
#   4. put the passphrase into the secret (output passphrase_secret_arn), then run `packvault init` once with
#      maintainer credentials against the repository_url output.

resource "aws_ecr_repository" "packvault" {
  name                 = "packvault-scale-out"
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
  }
}

resource "aws_ecr_lifecycle_policy" "packvault" {
  repository = aws_ecr_repository.packvault.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the 10 most recent images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = 10
      }
      action = { type = "expire" }
    }]
  })
}

module "repository" {
  source = "../../modules/repository-bucket"

  bucket_name                        = var.bucket_name
  repository_prefix                  = "main"
  versioning_enabled                 = true
  noncurrent_version_expiration_days = 30
}

# Parts and merge write with the writer policy (create-only); the merge additionally retires the parts' archive
# entries, which the module grants by itself. Plans and map results go to the repository bucket, outside the
# repository prefix.
module "scale_out" {
  source = "../../modules/scale-out"

  name                         = "packvault-lake"
  image_uri                    = "${aws_ecr_repository.packvault.repository_url}:${var.image_tag}"
  repository_url               = module.repository.repository_url
  source_url                   = var.source_url
  parts                        = var.parts
  max_concurrency              = var.max_concurrency
  tolerated_failure_percentage = 0
  work_bucket_name             = module.repository.bucket_name
  work_prefix                  = "scale-out/"
  worker_policy_arns           = [module.repository.writer_policy_arn]
  merge_policy_arns            = [module.repository.writer_policy_arn]
  schedule_expression          = "cron(0 1 * * ? *)"
}
