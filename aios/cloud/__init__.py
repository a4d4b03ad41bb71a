"""The cloud side of AIOS: the adapters the Lambda functions, state machines and GPU worker
of ``template.yaml`` use, built from the environment the template gives them.

Layout of the deployment (logical ids of ``template.yaml``):

- ``Api`` (API Gateway REST, stage ``Stage``) → ``ApiFunction`` (``functions/api.py``), its
  non-public routes guarded by ``AuthorizerFunction`` (``functions/authorizer.py``).
- IoT Core topic rules → ``HeartbeatIngestFunction``, ``TelemetryIngestFunction``,
  ``EventsIngestFunction``, ``CommandResponseIngestFunction`` (``functions/ingest.py``); their
  error actions send to ``DeadLetterQueue``.
- ``LifecycleStateMachine`` (Standard, ``stepfunctions/lifecycle.asl.json``), its Task steps
  run by ``LifecycleTaskFunction`` (``functions/lifecycle.py``).
- One Express state machine per pipeline revision, created at Play from the compiled ASL;
  its Tasks are the pipeline task functions, one per event-tier node type, logical id the
  compiler's placeholder without ``Arn`` (``HttpPostV1FunctionArn`` → ``HttpPostV1Function``),
  handler ``functions/pipeline_tasks.py``.
- ``DetectorCluster`` / ``DetectorTaskDefinition``: the stream worker on GPU capacity
  (``infra/detector/``), started by the lifecycle with ``ecs:runTask.waitForTaskToken``.
- ``DataTable`` (the single table of :mod:`aios.store.dynamodb`), ``IdempotencyTable``,
  ``MediaBucket``, ``ConsoleBucket`` (behind ``ConsoleDistribution``), ``JwtSecret``.

The environment variables are the names in :mod:`aios.cloud.env`.
"""
