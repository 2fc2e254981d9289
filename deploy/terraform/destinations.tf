resource "aws_lambda_function_event_invoke_config" "destinations" {
  for_each = toset(var.function_names)

  function_name          = each.value
  qualifier              = var.function_qualifier
  maximum_retry_attempts = var.maximum_retry_attempts

  destination_config {
    on_success {
      destination = aws_sqs_queue.success.arn
    }
    on_failure {
      destination = aws_sqs_queue.failure.arn
    }
  }

  depends_on = [aws_sqs_queue_policy.success, aws_sqs_queue_policy.failure]
}
