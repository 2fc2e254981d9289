variable "name" {
  description = "Prefix of every resource's name."
  type        = string
  default     = "lambda-destinations"
}

variable "image_uri" {
  description = "The lambda-destinations container image (built from the repository's Dockerfile)."
  type        = string
}

variable "function_names" {
  description = "Names of the Lambda functions whose asynchronous invocations get these queues as their on-success and on-failure destinations (each must not have an event invoke config yet)."
  type        = list(string)
}

variable "function_qualifier" {
  description = "The version or alias whose destinations are set ($LATEST for unqualified invokes)."
  type        = string
  default     = "$LATEST"
}

variable "function_role_arns" {
  description = "The functions' execution roles: Lambda sends destination records with the function's own role, and the queue policy lets these roles send. Empty if the roles already allow sqs:SendMessage on the queues."
  type        = list(string)
  default     = []
}

variable "maximum_retry_attempts" {
  description = "Lambda's own retries of a failed asynchronous invocation before on-failure (0-2)."
  type        = number
  default     = 2
  validation {
    condition     = var.maximum_retry_attempts >= 0 && var.maximum_retry_attempts <= 2
    error_message = "maximum_retry_attempts must be 0, 1 or 2."
  }
}

variable "subnet_ids" {
  description = "Subnets of the tasks (private subnets with a NAT gateway or VPC endpoints)."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the tasks (egress to SQS, the database, SNS/SES/Lambda)."
  type        = list(string)
}

variable "assign_public_ip" {
  description = "Give the tasks public IPs (only for public subnets without NAT)."
  type        = bool
  default     = false
}

variable "store_secret_arn" {
  description = "A Secrets Manager secret whose value is the PostgreSQL URL, given to the worker as LAMBDA_DESTINATIONS_STORE."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:secretsmanager:", var.store_secret_arn))
    error_message = "store_secret_arn must be a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME), not its name."
  }
}

variable "desired_count" {
  description = "Tasks at creation; auto scaling moves it between min_count and max_count."
  type        = number
  default     = 1
  validation {
    condition     = var.desired_count >= 1
    error_message = "desired_count must be 1 or more."
  }
}

variable "min_count" {
  description = "At least 1: backlog per task divides by the running tasks."
  type        = number
  default     = 1
  validation {
    condition     = var.min_count >= 1
    error_message = "min_count must be 1 or more."
  }
}

variable "max_count" {
  description = "Most tasks auto scaling may run."
  type        = number
  default     = 10
  validation {
    condition     = var.max_count >= 1
    error_message = "max_count must be 1 or more."
  }
}

variable "backlog_per_task" {
  description = "Target of the scaling policy: visible messages (both queues) per running task."
  type        = number
  default     = 100
  validation {
    condition     = var.backlog_per_task >= 1
    error_message = "backlog_per_task must be 1 or more."
  }
}

variable "routes" {
  description = "LAMBDA_DESTINATIONS_ROUTES, the routing rules as JSON."
  type        = string
  default     = "[{\"handlers\": [\"persist\"]}]"
}

variable "handlers" {
  description = "LAMBDA_DESTINATIONS_HANDLERS, the named handler settings as JSON."
  type        = string
  default     = "{}"
}

variable "handler_secret_arn" {
  description = "A Secrets Manager secret of key/value pairs (one JSON object) holding the variables the handlers' *_env options name (SLACK_WEBHOOK_URL, SMTP_PASSWORD, ...), given to the worker whole as LAMBDA_DESTINATIONS_SECRETS. Empty: none."
  type        = string
  default     = ""
  validation {
    condition     = var.handler_secret_arn == "" || can(regex("^arn:aws[a-z-]*:secretsmanager:", var.handler_secret_arn))
    error_message = "handler_secret_arn must be a Secrets Manager secret ARN, or empty."
  }
}

variable "accounts" {
  description = "LAMBDA_DESTINATIONS_ACCOUNTS, by account id the role to assume for Lambda calls to that account's functions, as JSON ({\"111122223333\": {\"role_arn\": \"arn:aws:iam::111122223333:role/NAME\"}})."
  type        = string
  default     = "{}"
}

variable "account_role_arns" {
  description = "The role ARNs of accounts; grants sts:AssumeRole on them. Empty: no such permission."
  type        = list(string)
  default     = []
}

variable "record_buckets" {
  description = "Names of S3 buckets (of this account) that are functions' on-failure destinations: the worker may read the records Lambda writes under their aws/lambda/ prefix, and the failure queue's policy lets S3 send it their event notifications. Each bucket's notification configuration is yours to set (the record_bucket_notification output). Empty: none."
  type        = list(string)
  default     = []
}

variable "sms_enabled" {
  description = "Grant sns:Publish (for the sms handler)."
  type        = bool
  default     = false
}

variable "email_identity_arns" {
  description = "SES identity (and configuration set) ARNs the email handler sends as; grants ses:SendEmail on them. Empty: no email permission."
  type        = list(string)
  default     = []
}

variable "visibility_timeout" {
  description = "Seconds a received message stays hidden; the worker's heartbeat extends it."
  type        = number
  default     = 60
  validation {
    condition     = var.visibility_timeout >= 10 && var.visibility_timeout <= 43200
    error_message = "visibility_timeout must be between 10 and 43200 seconds."
  }
}

variable "max_receive_count" {
  description = "Receives before SQS moves a message to the DLQ (2 or more: the worker quarantines a failing message on its last receive, so 1 would leave it no retry)."
  type        = number
  default     = 5
  validation {
    condition     = var.max_receive_count >= 2 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 2 and 1000."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "alarm_topic_arn" {
  description = "An SNS topic the alarms notify when they go to ALARM and back to OK. Empty: the alarms exist with no action (their state shows in the CloudWatch console)."
  type        = string
  default     = ""
  validation {
    condition     = var.alarm_topic_arn == "" || can(regex("^arn:aws[a-z-]*:sns:", var.alarm_topic_arn))
    error_message = "alarm_topic_arn must be an SNS topic ARN, or empty."
  }
}

variable "oldest_message_age_threshold" {
  description = "Seconds the oldest message of a destination queue may wait before its alarm fires. Keep it above the worker's retry backoff up to a message's third receive (5 + 10 s with the default LAMBDA_DESTINATIONS_RETRY_BASE) plus twice the longest handler run."
  type        = number
  default     = 900
  validation {
    condition     = var.oldest_message_age_threshold >= 300 && var.oldest_message_age_threshold <= 345600
    error_message = "oldest_message_age_threshold must be between 300 and 345600 seconds."
  }
}
