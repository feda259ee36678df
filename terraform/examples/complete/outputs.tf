output "repository_url" {
  description = "Repository URL for the packvault CLI."
  value       = module.repository.repository_url
}

output "ecr_repository_url" {
  description = "Where to push the Lambda image."
  value       = aws_ecr_repository.packvault.repository_url
}

output "passphrase_secret_arn" {
  description = "Secret to put the repository passphrase into."
  value       = module.backup.passphrase_secret_arn
}

output "writer_policy_arn" {
  description = "Writer policy, e.g. for workstations that back up with the CLI."
  value       = module.repository.writer_policy_arn
}

output "maintainer_policy_arn" {
  description = "Maintainer policy for whoever runs init, prune and compact by hand."
  value       = module.repository.maintainer_policy_arn
}

output "dead_letter_queue_urls" {
  description = "Failed runs land here; alarm on their depth."
  value       = [module.backup.dead_letter_queue_url, module.maintenance.dead_letter_queue_url]
}
