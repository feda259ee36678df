output "function_name" {
  description = "Name of the Lambda function (invoke it by hand for a test run)."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the Lambda function."
  value       = aws_lambda_function.this.arn
}

output "role_arn" {
  description = "ARN of the function's execution role (attach source read policies to it)."
  value       = aws_iam_role.lambda.arn
}

output "role_name" {
  description = "Name of the function's execution role."
  value       = aws_iam_role.lambda.name
}

output "schedule_arn" {
  description = "ARN of the EventBridge Scheduler schedule."
  value       = aws_scheduler_schedule.this.arn
}

output "passphrase_secret_arn" {
  description = "ARN of the Secrets Manager secret the function reads the passphrase from (put the value in it)."
  value       = local.secret_arn
}

output "log_group_name" {
  description = "CloudWatch log group of the function."
  value       = aws_cloudwatch_log_group.this.name
}

output "dead_letter_queue_url" {
  description = "SQS queue that receives runs that failed after all retries (alarm on its depth)."
  value       = aws_sqs_queue.dead_letter.url
}

output "kms_key_arn" {
  description = "KMS key used for the secret, logs, environment, schedule and dead-letter queue."
  value       = local.kms_key_arn
}
