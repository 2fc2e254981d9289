data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

# ECS pulls the image, writes the logs and reads the store URL secret and the handlers' secret.
resource "aws_iam_role" "execution" {
  name_prefix        = "${var.name}-exec-"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_store_secret" {
  name = "secrets"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = "secretsmanager:GetSecretValue"
      Resource = compact([var.store_secret_arn, var.handler_secret_arn])
    }]
  })
}

# The worker: exactly the actions lambda_destinations.aws_operations lists for it, on exactly
# their resources (tests/deploy checks both ways).
resource "aws_iam_role" "task" {
  name_prefix        = "${var.name}-task-"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

locals {
  function_arn_prefix = "arn:${data.aws_partition.current.partition}:lambda:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:function:"
}

data "aws_iam_policy_document" "worker" {
  statement {
    sid = "ConsumeDestinationQueues"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueUrl",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.success.arn, aws_sqs_queue.failure.arn]
  }

  statement {
    sid       = "QuarantineToDeadLetterQueues"
    actions   = ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.success_dlq.arn, aws_sqs_queue.failure_dlq.arn]
  }

  statement {
    sid       = "ScaleInProtection"
    actions   = ["ecs:UpdateTaskProtection"]
    resources = ["arn:${data.aws_partition.current.partition}:ecs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:task/${aws_ecs_cluster.this.name}/*"]
  }

  statement {
    sid     = "ReplayInvokesTheFunctions"
    actions = ["lambda:InvokeFunction"]
    resources = flatten([
      for function in var.function_names :
      ["${local.function_arn_prefix}${function}", "${local.function_arn_prefix}${function}:*"]
    ])
  }

  dynamic "statement" {
    for_each = var.sms_enabled ? [1] : []
    content {
      sid       = "SendSms"
      actions   = ["sns:Publish"]
      resources = ["*"] # SMS to a phone number has no ARN to name
    }
  }

  dynamic "statement" {
    for_each = length(var.email_identity_arns) > 0 ? [1] : []
    content {
      sid       = "SendEmail"
      actions   = ["ses:SendEmail"]
      resources = var.email_identity_arns
    }
  }

  dynamic "statement" {
    for_each = length(var.record_buckets) > 0 ? [1] : []
    content {
      sid = "ReadRecordsLambdaWrote"
      # s3:GetObjectVersion: S3 checks it instead for a read of the version a notice names
      actions   = ["s3:GetObject", "s3:GetObjectVersion"]
      resources = [for bucket in var.record_buckets : "arn:${data.aws_partition.current.partition}:s3:::${bucket}/aws/lambda/*"]
    }
  }

  dynamic "statement" {
    for_each = length(var.account_role_arns) > 0 ? [1] : []
    content {
      sid       = "AssumeAccountRoles"
      actions   = ["sts:AssumeRole"]
      resources = var.account_role_arns
    }
  }
}

resource "aws_iam_role_policy" "worker" {
  name   = "worker"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.worker.json
}
