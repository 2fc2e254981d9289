# No Prometheus scrapes the worker on ECS: these alarms read what AWS publishes by itself (SQS
# every minute, Container Insights for the service), and say what to run. The repository's
# README, "Alarms on ECS", explains each and its treat_missing_data.

locals {
  alarm_actions = var.alarm_topic_arn == "" ? [] : [var.alarm_topic_arn]
  dead_letter_queues = {
    success = aws_sqs_queue.success_dlq.name
    failure = aws_sqs_queue.failure_dlq.name
  }
  destination_queues = {
    success = aws_sqs_queue.success.name
    failure = aws_sqs_queue.failure.name
  }
}

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  for_each = local.dead_letter_queues

  alarm_name        = "${var.name}-${each.key}-dlq-not-empty"
  alarm_description = "Messages SQS dead-lettered after maxReceiveCount, or the worker quarantined, wait in the DLQ ${each.value}: records that need a human. `lambda-destinations dlq peek ${each.value}` shows what they are and why; fix the cause (`lambda-destinations doctor`), then `lambda-destinations dlq redrive ${each.value}` puts them back. The alarm stays in ALARM until the DLQ is empty. README, \"Alarms on ECS\"."
  namespace         = "AWS/SQS"
  metric_name       = "ApproximateNumberOfMessagesVisible"
  dimensions = {
    QueueName = each.value
  }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  # SQS stops publishing an idle queue's metrics after about six hours: an empty DLQ no one
  # touches stays OK, and one in ALARM leaves it only on a datapoint of 0.
  treat_missing_data = "ignore"
  alarm_actions      = local.alarm_actions
  ok_actions         = local.alarm_actions
  tags               = var.tags
}

resource "aws_cloudwatch_metric_alarm" "queue_not_draining" {
  for_each = local.destination_queues

  alarm_name        = "${var.name}-${each.key}-queue-not-draining"
  alarm_description = "The oldest message of ${each.value} has waited over ${var.oldest_message_age_threshold} s for 3 minutes: the worker does not drain the queue (no task running, tasks crash-looping, receiving paused because the store is unavailable, receives refused, or too few tasks for the backlog). The worker's log (log group ${aws_cloudwatch_log_group.worker.name}) says why (`store unavailable; receiving paused`, a failing receive's warning, or why it exited); `lambda-destinations doctor` checks the queues, the credentials and the store. A message retried with backoff ages too, but SQS leaves it out of this metric after its third receive. README, \"Alarms on ECS\"."
  namespace         = "AWS/SQS"
  metric_name       = "ApproximateAgeOfOldestMessage"
  dimensions = {
    QueueName = each.value
  }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.oldest_message_age_threshold
  # SQS publishes the age only while the queue holds a message: no data, nothing waits.
  treat_missing_data = "notBreaching"
  alarm_actions      = local.alarm_actions
  ok_actions         = local.alarm_actions
  tags               = var.tags
}

resource "aws_cloudwatch_metric_alarm" "no_running_task" {
  alarm_name        = "${var.name}-no-running-task"
  alarm_description = "The service ${aws_ecs_service.worker.name} has run no task for 5 minutes: nothing receives from the queues, and records wait until they expire. The service's events (aws ecs describe-services --cluster ${aws_ecs_cluster.this.name} --services ${aws_ecs_service.worker.name}) and the stopped tasks' reasons say why (an image that cannot be pulled, a secret that cannot be read, the worker exiting: its log, log group ${aws_cloudwatch_log_group.worker.name}, ends with why). Missing data counts as no task: Container Insights, which this alarm and scaling read, may be off. README, \"Alarms on ECS\"."
  namespace         = "ECS/ContainerInsights"
  metric_name       = "RunningTaskCount"
  dimensions = {
    ClusterName = aws_ecs_cluster.this.name
    ServiceName = aws_ecs_service.worker.name
  }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  # No datapoint is no task as far as anyone can tell: Container Insights turned off, or the
  # service gone. Both leave the queues unwatched: fail loudly.
  treat_missing_data = "breaching"
  alarm_actions      = local.alarm_actions
  ok_actions         = local.alarm_actions
  tags               = var.tags
}
