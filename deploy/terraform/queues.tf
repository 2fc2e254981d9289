resource "aws_sqs_queue" "success_dlq" {
  name                      = "${var.name}-success-dlq"
  sqs_managed_sse_enabled   = true
  message_retention_seconds = 1209600 # 14 days: longer than the source queues keep messages
  tags                      = var.tags
}

resource "aws_sqs_queue" "failure_dlq" {
  name                      = "${var.name}-failure-dlq"
  sqs_managed_sse_enabled   = true
  message_retention_seconds = 1209600
  tags                      = var.tags
}

resource "aws_sqs_queue" "success" {
  name                       = "${var.name}-success"
  sqs_managed_sse_enabled    = true
  visibility_timeout_seconds = var.visibility_timeout
  message_retention_seconds  = 345600 # 4 days
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.success_dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
  tags = var.tags
}

resource "aws_sqs_queue" "failure" {
  name                       = "${var.name}-failure"
  sqs_managed_sse_enabled    = true
  visibility_timeout_seconds = var.visibility_timeout
  message_retention_seconds  = 345600
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.failure_dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
  tags = var.tags
}

data "aws_iam_policy_document" "destination_queue" {
  for_each = {
    success = aws_sqs_queue.success.arn
    failure = aws_sqs_queue.failure.arn
  }

  dynamic "statement" {
    for_each = length(var.function_role_arns) > 0 ? [1] : []
    content {
      sid       = "LambdaSendsDestinationRecords"
      effect    = "Allow"
      actions   = ["sqs:SendMessage"]
      resources = [each.value]
      principals {
        type        = "AWS"
        identifiers = var.function_role_arns
      }
    }
  }

  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [each.value]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "success" {
  queue_url = aws_sqs_queue.success.id
  policy    = data.aws_iam_policy_document.destination_queue["success"].json
}

resource "aws_sqs_queue_policy" "failure" {
  queue_url = aws_sqs_queue.failure.id
  policy    = data.aws_iam_policy_document.destination_queue["failure"].json
}
