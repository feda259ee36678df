output "repository_url" {
  description = "Repository URL for the packvault CLI."
  value       = module.repository.repository_url
}

output "ecr_repository_url" {
  description = "Where to push the Lambda image."
  value       = aws_ecr_repository.packvault.repository_url
}

output "state_machine_arn" {
  description = "The scale-out state machine (start a run by hand with aws stepfunctions start-execution)."
  value       = module.scale_out.state_machine_arn
}

output "passphrase_secret_arn" {
  description = "Secret to put the repository passphrase into."
  value       = module.scale_out.passphrase_secret_arn
}
