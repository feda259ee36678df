output "state_machine_arn" {
  description = "ARN of the state machine (start an execution by hand: aws stepfunctions start-execution --state-machine-arn ...)."
  value       = aws_sfn_state_machine.this.arn
}

output "function_arns" {
  description = "ARNs of the plan, part and merge functions, by step."
  value       = { for step, function in aws_lambda_function.this : step => function.arn }
}

output "role_arns" {
  description = "ARNs of the roles: plan, part, merge (functions), states (state machine), scheduler."
  value = merge(
    { for step, role in aws_iam_role.function : step => role.arn },
    { states = aws_iam_role.state_machine.arn, scheduler = aws_iam_role.scheduler.arn },
  )
}

output "schedule_arn" {
  description = "ARN of the EventBridge Scheduler schedule."
  value       = aws_scheduler_schedule.this.arn
}

output "passphrase_secret_arn" {
  description = "Secrets Manager secret the part and merge functions read the passphrase from (put the value in it)."
  value       = local.secret_arn
}

output "kms_key_arn" {
  description = "KMS key used for the secret, logs, environments, schedule and dead-letter queue."
  value       = local.kms_key_arn
}

output "log_group_names" {
  description = "CloudWatch log groups: one per function and one for the state machine."
  value       = concat([for group in aws_cloudwatch_log_group.function : group.name], [aws_cloudwatch_log_group.state_machine.name])
}

output "plans_location" {
  description = "Where plans are written (one <execution name>.json per run)."
  value       = "s3://${var.work_bucket_name}/${local.plans_prefix}"
}

output "results_location" {
  description = "Where the Distributed Map writes its run results (manifest.json and per-status files)."
  value       = "s3://${var.work_bucket_name}/${local.results_prefix}"
}

output "dead_letter_queue_url" {
  description = "SQS queue that receives schedule firings that could not start an execution (alarm on its depth)."
  value       = aws_sqs_queue.dead_letter.url
}
