"""Names of the environment variables ``template.yaml`` gives the cloud functions and the
stream worker. One place, so the template, the functions and the tests agree.

Every function gets the ``COMMON`` ones (SAM ``Globals``); the others only the functions
that need them.
"""

from __future__ import annotations

# --- every function ----------------------------------------------------------------------
DATABASE_URL = "AIOS_DATABASE_URL"
"""``dynamodb://<DataTable name>`` (see :mod:`aios.store.factory`)."""
IDEMPOTENCY_TABLE = "AIOS_IDEMPOTENCY_TABLE"
"""Name of the Powertools idempotency table (partition key ``id``, TTL ``expiration``)."""
MEDIA_BUCKET = "AIOS_MEDIA_BUCKET"
"""S3 bucket of snapshots, clips, uploaded video and compiled definitions."""
STAGE = "AIOS_STAGE"
"""Deployment stage (``dev``, ``prod``…): part of every name the functions create."""
JWT_SECRET_ARN = "AIOS_JWT_SECRET_ARN"
"""Secrets Manager secret holding the HMAC key of access tokens (``SecretString``)."""

COMMON = (DATABASE_URL, IDEMPOTENCY_TABLE, MEDIA_BUCKET, STAGE, JWT_SECRET_ARN)

# --- device messaging --------------------------------------------------------------------
IOT_DATA_ENDPOINT = "AIOS_IOT_DATA_ENDPOINT"
"""``https://<prefix>-ats.iot.<region>.amazonaws.com`` (unset: DescribeEndpoint at cold start)."""

# --- integration secrets -----------------------------------------------------------------
INTEGRATION_SECRET_PREFIX = "AIOS_INTEGRATION_SECRET_PREFIX"
"""Name prefix of the Secrets Manager secrets of integrations (``aios/<stage>/integrations/``):
the secret of integration ``telegram_bot_token`` is ``<prefix>telegram_bot_token``."""

# --- pipeline runs -----------------------------------------------------------------------
LIFECYCLE_STATE_MACHINE_ARN = "AIOS_LIFECYCLE_STATE_MACHINE_ARN"
"""The lifecycle state machine Play starts (API function)."""
EVENT_MACHINE_ROLE_ARN = "AIOS_EVENT_MACHINE_ROLE_ARN"
"""Role of the Express state machines created at Play (invokes the task functions)."""
EVENT_MACHINE_PREFIX = "AIOS_EVENT_MACHINE_PREFIX"
"""Name prefix of those state machines (``aios-<stage>-pl-``); IAM scopes to it."""
TASK_FUNCTION_ARNS = "AIOS_TASK_FUNCTION_ARNS"
"""JSON object: compiler placeholder (``HttpPostV1FunctionArn``) → Lambda function ARN."""
EVENT_MACHINE_LOG_GROUP_ARN = "AIOS_EVENT_MACHINE_LOG_GROUP_ARN"
"""Log group of the Express machines' execution logs (level ERROR; optional)."""
API_URL = "AIOS_API_URL"
"""The API's base URL as connectors reach it (edge plans' media target; optional: the API
function learns it from API Gateway's request context)."""
SCHEDULE_GROUP = "AIOS_SCHEDULE_GROUP"
"""EventBridge Scheduler group of the timer nodes' schedules."""
SCHEDULER_ROLE_ARN = "AIOS_SCHEDULER_ROLE_ARN"
"""Role EventBridge Scheduler assumes to start executions of the event state machines."""
NODE_TYPE = "AIOS_NODE_TYPE"
"""The node type a pipeline task function runs (``aios/http_post@1``)."""

# --- stream worker (ECS task) --------------------------------------------------------------
NAME_PREFIX = "AIOS_NAME_PREFIX"
"""``NamePrefix`` of the template: first part of the Kinesis Video stream names."""
TASK_TOKEN = "AIOS_TASK_TOKEN"
"""Step Functions task token the worker answers once ready (``SendTaskSuccess``)."""
RUN_ID = "AIOS_RUN_ID"
"""The run the worker serves."""
