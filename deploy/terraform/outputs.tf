output "success_queue_url" {
  description = "URL of the on-success destination queue (the worker polls it)."
  value       = aws_sqs_queue.success.url
}

output "success_queue_arn" {
  description = "ARN of the on-success destination queue."
  value       = aws_sqs_queue.success.arn
}

output "failure_queue_url" {
  description = "URL of the on-failure destination queue (the worker polls it)."
  value       = aws_sqs_queue.failure.url
}

output "failure_queue_arn" {
  description = "ARN of the on-failure destination queue."
  value       = aws_sqs_queue.failure.arn
}

output "success_dead_letter_queue_url" {
  description = "URL of the success queue's DLQ (lambda-destinations dlq peek|redrive)."
  value       = aws_sqs_queue.success_dlq.url
}

output "failure_dead_letter_queue_url" {
  description = "URL of the failure queue's DLQ (lambda-destinations dlq peek|redrive)."
  value       = aws_sqs_queue.failure_dlq.url
}

output "cluster_name" {
  description = "The ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "service_name" {
  description = "The worker's ECS service."
  value       = aws_ecs_service.worker.name
}

output "task_role_arn" {
  description = "The worker's IAM role."
  value       = aws_iam_role.task.arn
}

output "record_bucket_notification" {
  description = "The notification configuration of each bucket of record_buckets (aws s3api put-bucket-notification-configuration --bucket NAME --notification-configuration VALUE; it replaces the bucket's own: merge them if it has some); null without record_buckets."
  value = length(var.record_buckets) > 0 ? jsonencode({
    QueueConfigurations = [{
      QueueArn = aws_sqs_queue.failure.arn
      Events   = ["s3:ObjectCreated:*"]
      Filter   = { Key = { FilterRules = [{ Name = "prefix", Value = "aws/lambda/" }] } }
    }]
  }) : null
}
