resource "aws_cloudwatch_log_group" "worker" {
  name              = "/ecs/${var.name}"
  retention_in_days = 30
  tags              = var.tags
}

resource "aws_ecs_cluster" "this" {
  name = var.name
  # RunningTaskCount, the divisor of backlog per task, comes from Container Insights.
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
  tags = var.tags
}

locals {
  ops_port       = 8080
  shutdown_grace = 25
  environment = {
    LAMBDA_DESTINATIONS_QUEUES         = "${aws_sqs_queue.success.url},${aws_sqs_queue.failure.url}"
    LAMBDA_DESTINATIONS_REGION         = data.aws_region.current.name
    LAMBDA_DESTINATIONS_OPS_PORT       = tostring(local.ops_port)
    LAMBDA_DESTINATIONS_SHUTDOWN_GRACE = tostring(local.shutdown_grace)
    LAMBDA_DESTINATIONS_LOG_FORMAT     = "json"
    LAMBDA_DESTINATIONS_ROUTES         = var.routes
    LAMBDA_DESTINATIONS_HANDLERS       = var.handlers
    LAMBDA_DESTINATIONS_ACCOUNTS       = var.accounts
  }
}

resource "aws_ecs_task_definition" "worker" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = "512"
  memory                   = "1024"
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  volume {
    name = "tmp" # the one writable place: the root filesystem is read-only
  }

  container_definitions = jsonencode([{
    name                   = "worker"
    image                  = var.image_uri
    essential              = true
    readonlyRootFilesystem = true
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp" }]
    portMappings           = [{ name = "ops", containerPort = local.ops_port, protocol = "tcp" }]
    environment            = [for key, value in local.environment : { name = key, value = value }]
    # No capability: the worker needs none (uid 10001, port 8080). Fargate takes no
    # no-new-privileges option; with no capability left, a setuid program gains none.
    linuxParameters = { capabilities = { drop = ["ALL"] } }
    secrets = concat(
      [{ name = "LAMBDA_DESTINATIONS_STORE", valueFrom = var.store_secret_arn }],
      var.handler_secret_arn == "" ? [] : [{ name = "LAMBDA_DESTINATIONS_SECRETS", valueFrom = var.handler_secret_arn }],
    )
    # SIGTERM, then shutdown_grace for in-flight handlers, then a few seconds to release and
    # flush; ECS sends SIGKILL only after this.
    stopTimeout = local.shutdown_grace + 10
    # The image's own check: it asks the ops server on loopback (::1 when
    # LAMBDA_DESTINATIONS_OPS_HOST is ::) at LAMBDA_DESTINATIONS_OPS_PORT, never through an
    # HTTP_PROXY the task sets, and passes on the worker's own 200 alone.
    healthCheck = {
      command     = ["CMD", "lambda-destinations", "healthcheck"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.worker.name
        awslogs-region        = data.aws_region.current.name
        awslogs-stream-prefix = "worker"
      }
    }
  }])

  tags = var.tags
}

resource "aws_ecs_service" "worker" {
  name            = var.name
  cluster         = aws_ecs_cluster.this.id
  launch_type     = "FARGATE"
  task_definition = aws_ecs_task_definition.worker.arn
  desired_count   = var.desired_count
  propagate_tags  = "SERVICE"

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = var.security_group_ids
    assign_public_ip = var.assign_public_ip
  }

  # Auto scaling owns the count once the service exists.
  lifecycle {
    ignore_changes = [desired_count]
  }

  tags = var.tags
}
