# A complete Packvault deployment: a repository bucket, a nightly backup job that may only add data, and a weekly
# maintenance job that prunes and compacts.
#
# Bootstrapping order (the function needs an image, the image needs the ECR repository):
#   1. terraform apply -target=aws_ecr_repository.packvault
#   2. docker build -f terraform/modules/scheduled-backup/image/Dockerfile -t <ecr_repository_url>:<image_tag> .
#      docker push <ecr_repository_url>:<image_tag>
#   3. terraform apply
#   4. put the passphrase into the secret (output passphrase_secret_arn), then run `packvault init` once with
#      maintainer credentials against the repository_url output.

resource "aws_ecr_repository" "packvault" {
  name                 = "packvault-lambda"
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
  }
}

# Old images are of no use once the functions run a newer tag.
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
  repository_prefix                  = var.repository_prefix
  versioning_enabled                 = true
  noncurrent_version_expiration_days = 30
  data_packs_transition              = { days = 30, storage_class = "STANDARD_IA" }
}

# Nightly backup with the writer policy: a leaked credential of this function can add archives, never delete any.
module "backup" {
  source = "../../modules/scheduled-backup"

  name                   = "packvault-backup"
  image_uri              = "${aws_ecr_repository.packvault.repository_url}:${var.image_tag}"
  repository_url         = module.repository.repository_url
  sources                = var.sources
  repository_policy_arns = concat([module.repository.writer_policy_arn], var.source_read_policy_arns)
  schedule_expression    = "cron(30 2 * * ? *)"
}

# Weekly maintenance with the maintainer policy: no sources, only prune and compact. It shares the backup job's
# passphrase secret.
module "maintenance" {
  source = "../../modules/scheduled-backup"

  name                   = "packvault-maintenance"
  image_uri              = "${aws_ecr_repository.packvault.repository_url}:${var.image_tag}"
  repository_url         = module.repository.repository_url
  sources                = []
  prune                  = { keep_daily = 7, keep_weekly = 4, keep_monthly = 12 }
  compact                = true
  repository_policy_arns = [module.repository.maintainer_policy_arn]
  passphrase_secret_arn  = module.backup.passphrase_secret_arn
  passphrase_kms_key_arn = module.backup.kms_key_arn
  schedule_expression    = "cron(0 5 ? * SUN *)"
}
