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

  # S3 sends the failure queue the event notifications of the records Lambda writes to the
  # buckets of record_buckets.
  dynamic "statement" {
    for_each = each.key == "failure" && length(var.record_buckets) > 0 ? [1] : []
    content {
      sid       = "S3NotifiesOfRecords"
      effect    = "Allow"
      actions   = ["sqs:SendMessage"]
      resources = [each.value]
      principals {
        type        = "Service"
        identifiers = ["s3.amazonaws.com"]
      }
      condition {
        test     = "ArnLike"
        variable = "aws:SourceArn"
        values   = [for bucket in var.record_buckets : "arn:${data.aws_partition.current.partition}:s3:::${bucket}"]
      }
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [data.aws_caller_identity.current.account_id]
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
