"""The SAM template (``template.yaml``): it lints, builds, and says what the code expects.

- ``sam validate --lint`` and cfn-lint accept it; statelint accepts every
  ``stepfunctions/*.asl.json`` with the template's ``DefinitionSubstitutions`` filled in, and
  every example pipeline compiled with the template's task functions filled in.
- ``sam build`` (no container) builds it, and each function with its layers stays under
  Lambda's 250 MB unzipped limit.
- The contract of :mod:`aios.cloud`: ``DataTable`` is :func:`aios.store.dynamodb.
  table_definition`; the pipeline task functions are exactly the catalog's event-tier Task
  node types; handlers resolve to callables of ``functions/``; environment variable names
  are those of :mod:`aios.cloud.env`.
- No account id, region or literal ARN; every IAM statement is a SAM policy template or
  names its resources (``"*"`` only for actions AWS grants on no narrower resource).
- The IoT endpoint custom resource answers CloudFormation (moto IoT, a real HTTP server
  standing in for the pre-signed response URL).

The SAM CLI lives in ``.tools/sam`` (``scripts/setup.sh --dev``).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cloud_stack import load_template, transform
from moto import mock_aws
from statelint.linter import Linter

from aios.cloud import env
from aios.events.compiler import compile_pipeline, task_placeholder
from aios.nodes import CATALOG
from aios.pipeline.validation import validate_pipeline
from aios.store._dynamo_base import TTL_ATTRIBUTE
from aios.store.dynamodb import table_definition

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "template.yaml"
SAM = ROOT / ".tools" / "sam" / "bin" / "sam"
LAMBDA_UNZIPPED_LIMIT = 262_144_000
"""Bytes of a function's code and layers, unzipped (Lambda quotas: 250 MB)."""

TASK_HANDLER = "functions.pipeline_tasks.handler"

# Actions IAM authorizes on no narrower resource than "*" (Service Authorization Reference:
# the action lists no resource type), the only ones a statement may grant on "*".
STAR_ONLY_ACTIONS = {
    "iot:DescribeEndpoint",
    "secretsmanager:ListSecrets",
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
    "states:ValidateStateMachineDefinition",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}
# AWS managed policies the template attaches (roles of AWS services' agents).
AWS_MANAGED_POLICIES = {
    "service-role/AmazonAPIGatewayPushToCloudWatchLogs",
    "service-role/AmazonECSTaskExecutionRolePolicy",
    "service-role/AmazonEC2ContainerServiceforEC2Role",
}
REQUIRED_OUTPUTS = {
    "ApiUrl",
    "ConsoleUrl",
    "ConsoleDistributionId",
    "ConsoleBucketName",
    "MediaBucketName",
    "IotEndpoint",
    "DataTableName",
    "LifecycleStateMachineArn",
    "KvsRoleAlias",
    "ConnectorPolicyName",
    "AlarmTopicArn",
}
PUBLIC_ROUTES = {
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("PUT", "/api/v1/runs/{run_id}/media/{kind}/{name}"),
    ("POST", "/api/v1/webhooks/{target_id}/{hook}"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
}
IOT_RULES = {
    "HeartbeatRule": ("dt/aios/+/heartbeat", "HeartbeatIngestFunction"),
    "TelemetryRule": ("dt/aios/+/telemetry", "TelemetryIngestFunction"),
    "EventsRule": ("dt/aios/+/events", "EventsIngestFunction"),
    "CommandResponseRule": ("cmd/aios/+/res", "CommandResponseIngestFunction"),
}


def sam_cli() -> Path:
    if not SAM.is_file():
        pytest.fail(f"the AWS SAM CLI is missing ({SAM}): run scripts/setup.sh --dev")
    return SAM


def run(
    args: list[str | Path], timeout: float, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    """The template as written (short-form tags as ``{"Ref": …}``)."""
    return load_template(TEMPLATE)


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def functions_of(sam: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources(sam, "AWS::Serverless::Function")


def environment_of(sam: dict[str, Any], logical_id: str) -> dict[str, Any]:
    variables = dict(sam["Globals"]["Function"]["Environment"]["Variables"])
    own = functions_of(sam)[logical_id]["Properties"].get("Environment") or {}
    variables.update(own.get("Variables") or {})
    return variables


def event_task_types() -> set[str]:
    """Node types the compiler turns into Lambda Tasks (event tier, processor or action)."""
    return {
        node_type.manifest.type
        for node_type in CATALOG
        if node_type.event_role is not None
        and node_type.event_role.value in ("processor", "action")
    }


# ---------------------------------------------------------------------- linters


def test_sam_validate_lint() -> None:
    result = run([sam_cli(), "validate", "--lint", "--template", TEMPLATE], timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint() -> None:
    from cfnlint.api import lint_file
    from cfnlint.config import ManualArgs

    matches = lint_file(TEMPLATE, config=ManualArgs(regions=["us-east-1"]))
    assert matches == [], "\n".join(str(m) for m in matches)


def fill(text: str, values: dict[str, str]) -> str:
    """``${Name}`` → ``values[Name]``; an unknown name fails (nothing left unfilled)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"${{{name}}} has no value in the template"
        return values[name]

    return re.sub(r"\$\{([A-Za-z0-9_]+)\}", one, text)


def example_value(name: str) -> str:
    """An example of what CloudFormation substitutes for a placeholder."""
    if name.endswith("FunctionArn"):
        return f"arn:aws:lambda:us-east-1:123456789012:function:aios-test-{name[:-3]}"
    if name.endswith("ClusterArn"):
        return "arn:aws:ecs:us-east-1:123456789012:cluster/aios-test-detector"
    if name.endswith("TaskDefinitionArn"):
        return "arn:aws:ecs:us-east-1:123456789012:task-definition/aios-test-detector:1"
    return f"aios-test-{name}"


def test_state_machine_files_lint_with_the_template_substitutions(sam: dict[str, Any]) -> None:
    machines = resources(sam, "AWS::Serverless::StateMachine")
    used = {m["Properties"]["DefinitionUri"]: m for m in machines.values()}
    files = sorted((ROOT / "stepfunctions").glob("*.asl.json"))
    assert files, "stepfunctions/ has no *.asl.json"
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        assert rel in used, f"{rel} is not the DefinitionUri of a state machine of the template"
        substitutions = used[rel]["Properties"].get("DefinitionSubstitutions") or {}
        placeholders = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", path.read_text()))
        assert placeholders == set(substitutions), (
            f"{rel}: placeholders {sorted(placeholders)} != DefinitionSubstitutions "
            f"{sorted(substitutions)}"
        )
        definition = json.loads(fill(path.read_text(), {n: example_value(n) for n in placeholders}))
        problems = list(Linter.validate(definition))
        assert problems == [], f"{rel}: {problems}"


def test_compiled_examples_lint_with_the_template_task_functions(sam: dict[str, Any]) -> None:
    functions = functions_of(sam)
    pipelines = sorted((ROOT / "examples" / "pipelines").glob("*.json"))
    assert pipelines
    for path in pipelines:
        compiled = compile_pipeline(validate_pipeline(json.loads(path.read_text()), CATALOG))
        if compiled is None:
            continue
        for placeholder in compiled.placeholders:
            assert placeholder.removesuffix("Arn") in functions, (
                f"{path.name}: the compiled definition needs {placeholder}, and the template "
                f"has no function {placeholder.removesuffix('Arn')}"
            )
        text = json.dumps(compiled.definition)
        definition = json.loads(
            fill(text, {p: example_value(p) for p in re.findall(r"\$\{(\w+)\}", text)})
        )
        assert list(Linter.validate(definition)) == [], path.name


# ---------------------------------------------------------------------- build


def test_sam_build_without_container(tmp_path: Path) -> None:
    assert shutil.which("make"), "sam build of the layers needs make"
    assert shutil.which("uv"), "sam build of the layers needs uv (scripts/setup.sh installs it)"
    build = tmp_path / "build"
    started = time.monotonic()
    result = run(
        [
            sam_cli(),
            "build",
            "--template",
            TEMPLATE,
            "--build-dir",
            build,
            "--cache-dir",
            tmp_path / "cache",
        ],
        timeout=600,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    built = load_template(build / "template.yaml")

    layers = {
        lid: build / res["Properties"]["ContentUri"]
        for lid, res in resources(built, "AWS::Serverless::LayerVersion").items()
    }
    assert (layers["AiosLayer"] / "python" / "aios" / "cloud" / "env.py").is_file()
    assert (layers["AiosLayer"] / "python" / "pydantic").is_dir()
    assert (layers["VisionLayer"] / "python" / "cv2").is_dir()
    assert (layers["VisionLayer"] / "python" / "onnxruntime").is_dir()
    # Left out on purpose (the runtime's boto3; local-only servers and test doubles).
    for absent in ("moto", "uvicorn", "boto3"):
        assert not (layers["AiosLayer"] / "python" / absent).exists(), absent

    def size(folder: Path) -> int:
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

    layer_sizes = {lid: size(path) for lid, path in layers.items()}
    global_layers = [x["Ref"] for x in built["Globals"]["Function"].get("Layers", [])]
    report = {}
    for lid, res in functions_of(built).items():
        props = res["Properties"]
        code = build / props["CodeUri"]
        module = props["Handler"].rsplit(".", 1)[0]
        assert (code / (module.replace(".", "/") + ".py")).is_file(), f"{lid}: no {module}"
        names = global_layers + [x["Ref"] for x in props.get("Layers", [])]
        assert len(names) == len(set(names)), f"{lid}: a layer is listed twice: {names}"
        total = size(code) + sum(layer_sizes[n] for n in names)
        report[lid] = total
        assert total < LAMBDA_UNZIPPED_LIMIT, f"{lid}: {total / 1e6:.1f} MB unzipped"
    largest = max(report, key=report.__getitem__)
    print(  # shown with -s: the figures the deployment depends on
        f"\nsam build: {seconds:.1f} s; layers "
        + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in layer_sizes.items())
        + f"; largest function {largest} {report[largest] / 1e6:.1f} MB unzipped"
    )


# ---------------------------------------------------------------------- contract


def test_data_table_is_the_store_table_definition(sam: dict[str, Any]) -> None:
    props = sam["Resources"]["DataTable"]["Properties"]
    expected = table_definition("x")
    for key in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "BillingMode"):
        assert props[key] == expected[key], key
    assert set(props) - set(expected) <= {
        "TableName",
        "TimeToLiveSpecification",
        "PointInTimeRecoverySpecification",
        "SSESpecification",
    }
    assert props["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}


def test_idempotency_table_is_what_powertools_expects(sam: dict[str, Any]) -> None:
    props = sam["Resources"]["IdempotencyTable"]["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_task_functions_are_the_catalog_task_types(sam: dict[str, Any]) -> None:
    tasks = {
        lid: res
        for lid, res in functions_of(sam).items()
        if res["Properties"].get("Handler") == TASK_HANDLER
    }
    expected = {task_placeholder(t).removesuffix("Arn"): t for t in event_task_types()}
    assert set(tasks) == set(expected), (
        f"missing: {sorted(set(expected) - set(tasks))}; "
        f"extra: {sorted(set(tasks) - set(expected))}"
    )
    for lid, type_id in expected.items():
        assert environment_of(sam, lid)[env.NODE_TYPE] == type_id, lid

    # The lifecycle's map placeholder → ARN, and the event machines' role, cover them all.
    arns = environment_of(sam, "LifecycleTaskFunction")[env.TASK_FUNCTION_ARNS]["Fn::Sub"]
    mapping = json.loads(re.sub(r"\$\{(\w+)\.Arn\}", r"\1", arns))
    assert mapping == {f"{lid}Arn": lid for lid in expected}
    statements = sam["Resources"]["EventMachineRole"]["Properties"]["Policies"][0][
        "PolicyDocument"
    ]["Statement"]
    invoke = next(s for s in statements if s["Action"] == "lambda:InvokeFunction")
    assert {r["Fn::GetAtt"][0] for r in invoke["Resource"]} == set(expected)


def test_every_handler_is_a_callable_of_functions(
    sam: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    for lid, res in functions_of(sam).items():
        handler = res["Properties"]["Handler"]
        module_name, attribute = handler.rsplit(".", 1)
        assert module_name.startswith("functions."), f"{lid}: {handler}"
        for name, value in environment_of(sam, lid).items():
            if isinstance(value, str):
                monkeypatch.setenv(name, value)
        module = importlib.import_module(module_name)
        assert callable(getattr(module, attribute, None)), f"{lid}: {handler} is not callable"


def known_environment_names() -> set[str]:
    """``AIOS_*`` names the cloud code reads: :mod:`aios.cloud.env`, the module constants of
    :mod:`aios.cloud` modules beyond the contract, and :class:`aios.config.Settings`."""
    from aios.cloud import lifecycle, worker
    from aios.config import Settings

    names = {
        value
        for module in (env, lifecycle, worker)
        for key, value in vars(module).items()
        if key.isupper() and isinstance(value, str) and value.startswith("AIOS_")
    }
    names |= {f"AIOS_{field.upper()}" for field in Settings.model_fields}
    return names


def test_environment_names_are_the_contract(sam: dict[str, Any]) -> None:
    common = sam["Globals"]["Function"]["Environment"]["Variables"]
    assert set(env.COMMON) <= set(common)
    assert common["POWERTOOLS_METRICS_NAMESPACE"] == "AIOS"
    assert {"POWERTOOLS_SERVICE_NAME", "LOG_LEVEL"} <= set(common)
    assert sam["Globals"]["Function"]["Tracing"] == "Active"
    names = known_environment_names()
    for lid in functions_of(sam):
        for name in environment_of(sam, lid):
            if name.startswith("AIOS_"):
                assert name in names, f"{lid}: {name} is read by no module of aios"
    container = sam["Resources"]["DetectorTaskDefinition"]["Properties"]["ContainerDefinitions"]
    for variable in container[0]["Environment"]:
        if variable["Name"].startswith("AIOS_"):
            assert variable["Name"] in names, f"detector: {variable['Name']} is read by nothing"
    lifecycle = environment_of(sam, "LifecycleTaskFunction")
    for name in (
        env.EVENT_MACHINE_ROLE_ARN,
        env.EVENT_MACHINE_PREFIX,
        env.TASK_FUNCTION_ARNS,
        env.SCHEDULE_GROUP,
        env.SCHEDULER_ROLE_ARN,
        env.IOT_DATA_ENDPOINT,
    ):
        assert name in lifecycle, name
    api = environment_of(sam, "ApiFunction")
    assert api[env.LIFECYCLE_STATE_MACHINE_ARN] == {"Ref": "LifecycleStateMachine"}
    assert env.IOT_DATA_ENDPOINT in api
    detector = sam["Resources"]["DetectorTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    detector_names = {e["Name"] for e in detector["Environment"]}
    # the worker signs nothing: it never gets the key of the API's tokens
    assert set(env.COMMON) - {env.JWT_SECRET_ARN} <= detector_names
    assert env.JWT_SECRET_ARN not in detector_names
    assert {"Type": "GPU", "Value": "1"} in detector["ResourceRequirements"]


def test_api_routes_and_authorizer(sam: dict[str, Any]) -> None:
    api = sam["Resources"]["Api"]["Properties"]
    auth = api["Auth"]
    authorizer = auth["Authorizers"][auth["DefaultAuthorizer"]]
    assert authorizer["FunctionArn"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}
    assert authorizer["FunctionPayloadType"] in ("TOKEN", "REQUEST")
    assert functions_of(sam)["AuthorizerFunction"]["Properties"]["Handler"] == (
        "functions.authorizer.handler"
    )
    assert set(api["BinaryMediaTypes"]) >= {
        "image~1jpeg",
        "video~1mp4",
        "application~1octet-stream",
    }
    assert api["MethodSettings"][0]["ThrottlingRateLimit"]
    assert api["AccessLogSetting"]["DestinationArn"]
    events = functions_of(sam)["ApiFunction"]["Properties"]["Events"]
    public = {
        (e["Properties"]["Method"].upper(), e["Properties"]["Path"])
        for e in events.values()
        if e["Properties"].get("Auth", {}).get("Authorizer") == "NONE"
    }
    assert public == PUBLIC_ROUTES
    assert any(e["Properties"]["Path"] == "/{proxy+}" for e in events.values())


def test_iot_rules_route_to_the_ingest_functions(sam: dict[str, Any]) -> None:
    permissions = resources(sam, "AWS::Lambda::Permission").values()
    for rule_id, (topic, function) in IOT_RULES.items():
        payload = sam["Resources"][rule_id]["Properties"]["TopicRulePayload"]
        assert payload["Sql"] == f"SELECT *, topic() AS mqtt_topic FROM '{topic}'"
        assert payload["Actions"] == [
            {"Lambda": {"FunctionArn": {"Fn::GetAtt": [function, "Arn"]}}}
        ]
        assert payload["ErrorAction"]["Sqs"]["QueueUrl"] == {"Ref": "DeadLetterQueue"}
        assert any(
            p["Properties"]["Principal"] == "iot.amazonaws.com"
            and p["Properties"]["FunctionName"] == {"Fn::GetAtt": [function, "Arn"]}
            and p["Properties"]["SourceArn"] == {"Fn::GetAtt": [rule_id, "Arn"]}
            for p in permissions
        ), f"no permission for {rule_id} to invoke {function}"


def test_buckets_are_private_and_encrypted(sam: dict[str, Any]) -> None:
    for lid in ("MediaBucket", "ConsoleBucket"):
        props = sam["Resources"][lid]["Properties"]
        assert all(props["PublicAccessBlockConfiguration"].values()), lid
        assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        policies = [
            p
            for p in resources(sam, "AWS::S3::BucketPolicy").values()
            if p["Properties"]["Bucket"] == {"Ref": lid}
        ]
        assert len(policies) == 1, lid
        tls = policies[0]["Properties"]["PolicyDocument"]["Statement"][0]
        assert tls["Effect"] == "Deny"
        assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert sam["Resources"]["ConsoleBucket"]["Properties"]["VersioningConfiguration"] == {
        "Status": "Enabled"
    }
    config = sam["Resources"]["ConsoleDistribution"]["Properties"]["DistributionConfig"]
    assert config["DefaultRootObject"] == "index.html"
    assert [b["PathPattern"] for b in config["CacheBehaviors"]] == ["/api/*"]
    assert "CustomErrorResponses" not in config  # they would rewrite the API's 403/404 too


def test_outputs(sam: dict[str, Any]) -> None:
    assert set(sam["Outputs"]) >= REQUIRED_OUTPUTS


# ---------------------------------------------------------------------- names and IAM

ACCOUNT_ID = re.compile(r"(?<![0-9])[0-9]{12}(?![0-9])")
REGION_NAME = re.compile(
    r"\b(?:us|eu|ap|sa|ca|me|af|il|mx|cn)-(?:gov-)?"
    r"(?:north|south|east|west|central|northeast|southeast|northwest|southwest)-[0-9]\b"
)
LITERAL_ARN = re.compile(r"arn:aws(?:-[a-z-]+)?:")


def test_no_literal_account_region_or_arn() -> None:
    for number, line in enumerate(TEMPLATE.read_text().splitlines(), 1):
        text = line.split("#", 1)[0] if line.lstrip().startswith("#") else line
        assert not ACCOUNT_ID.search(text), f"template.yaml:{number}: account id? {line}"
        assert not REGION_NAME.search(text), f"template.yaml:{number}: region? {line}"
        assert not LITERAL_ARN.search(text), f"template.yaml:{number}: literal ARN: {line}"


def policy_template_names() -> set[str]:
    import samtranslator

    path = Path(samtranslator.__file__).parent / "policy_templates_data" / "policy_templates.json"
    return set(json.loads(path.read_text())["Templates"])


def check_statement(where: str, statement: dict[str, Any]) -> None:
    assert "NotResource" not in statement and "NotAction" not in statement, where
    if statement.get("Effect") == "Deny":
        return
    assert "Resource" in statement, f"{where}: a statement without Resource"
    found = statement["Resource"]
    listed = found if isinstance(found, list) else [found]
    if "*" in listed:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        wide = set(actions) - STAR_ONLY_ACTIONS
        assert not wide, f"{where}: {sorted(wide)} granted on '*'"


def statements_of(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, dict) and "Fn::If" in document:
        return [s for branch in document["Fn::If"][1:] for s in statements_of(branch)]
    if not isinstance(document, dict):
        return []
    found = document.get("Statement", [])
    return found if isinstance(found, list) else [found]


def test_iam_statements_are_policy_templates_or_name_resources(sam: dict[str, Any]) -> None:
    templates = policy_template_names()
    checked = 0
    for kind in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
        for lid, res in resources(sam, kind).items():
            for entry in res["Properties"].get("Policies", []):
                branches = entry["Fn::If"][1:] if "Fn::If" in entry else [entry]
                for branch in branches:
                    if branch == {"Ref": "AWS::NoValue"}:
                        continue
                    assert isinstance(branch, dict), f"{lid}: managed policy {branch!r}"
                    if "Statement" in branch:
                        for statement in statements_of(branch):
                            check_statement(lid, statement)
                            checked += 1
                    else:
                        (name,) = branch
                        assert name in templates, f"{lid}: {name} is not a SAM policy template"
    for lid, res in resources(sam, "AWS::IAM::Role").items():
        for policy in res["Properties"].get("Policies", []):
            for statement in statements_of(policy["PolicyDocument"]):
                check_statement(lid, statement)
                checked += 1
        for arn in res["Properties"].get("ManagedPolicyArns", []):
            suffix = arn["Fn::Sub"].removeprefix("arn:${AWS::Partition}:iam::aws:policy/")
            assert suffix in AWS_MANAGED_POLICIES, f"{lid}: managed policy {arn}"
    for kind in ("AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy", "AWS::IoT::Policy"):
        for lid, res in resources(sam, kind).items():
            for statement in statements_of(res["Properties"]["PolicyDocument"]):
                check_statement(lid, statement)
                checked += 1
    assert checked > 30


def test_transformed_template_resolves(sam: dict[str, Any]) -> None:
    # The SAM transform succeeds and gives each function a role and the global settings.
    cfn = transform(sam, {"Stage": "test"}, ROOT)
    functions = resources(cfn, "AWS::Lambda::Function")
    assert len(functions) == 19
    for lid, res in functions.items():
        props = res["Properties"]
        assert props["Runtime"] == "python3.12", lid
        assert props["TracingConfig"] == {"Mode": "Active"}, lid
        assert f"{lid}Role" in cfn["Resources"], lid


# ---------------------------------------------------------------------- IoT endpoint resource


class _ResponseUrl(BaseHTTPRequestHandler):
    """Stands in for CloudFormation's pre-signed response URL: keeps each PUT."""

    received: ClassVar[list[tuple[dict[str, str], dict[str, Any]]]] = []

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        type(self).received.append((dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def response_url() -> Iterator[tuple[str, list[tuple[dict[str, str], dict[str, Any]]]]]:
    received: list[tuple[dict[str, str], dict[str, Any]]] = []
    handler = type("Handler", (_ResponseUrl,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (
            f"http://127.0.0.1:{server.server_address[1]}/cfn-response?X-Amz-Signature=x",
            received,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def custom_resource_event(request_type: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "RequestType": request_type,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/aios-test/1",
        "RequestId": f"request-{request_type}",
        "LogicalResourceId": "IotEndpoint",
        "ResourceType": "Custom::IotEndpoint",
        "ResourceProperties": {"ServiceToken": "x", "EndpointType": "iot:Data-ATS"},
        **extra,
    }


def test_iot_endpoint_custom_resource_answers_cloudformation(
    response_url: tuple[str, list[tuple[dict[str, str], dict[str, Any]]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from functions import iot_endpoint

    url, received = response_url
    with mock_aws():
        iot_endpoint.handler(custom_resource_event("Create", url), None)
        iot_endpoint.handler(
            custom_resource_event("Delete", url, PhysicalResourceId="old-ats.example"), None
        )
        iot_endpoint.handler(custom_resource_event("Rename", url), None)

    (headers, created), (_, deleted), (_, failed) = received
    assert headers.get("Content-Type", "") == ""
    assert created["Status"] == "SUCCESS"
    address = created["Data"]["Address"]
    assert re.fullmatch(r"[a-z0-9]+-ats\.iot\.us-east-1\.amazonaws\.com", address), address
    assert created["Data"] == {"Address": address, "Url": f"https://{address}"}
    assert created["PhysicalResourceId"] == address
    assert created["RequestId"] == "request-Create"
    assert created["LogicalResourceId"] == "IotEndpoint"
    assert deleted["Status"] == "SUCCESS"
    assert deleted["PhysicalResourceId"] == "old-ats.example"
    assert failed["Status"] == "FAILED"
    assert "Rename" in failed["Reason"]


def test_template_outputs_the_custom_resource_attributes(sam: dict[str, Any]) -> None:
    assert sam["Outputs"]["IotEndpoint"]["Value"] == {"Fn::GetAtt": ["IotEndpoint", "Address"]}
    assert environment_of(sam, "ApiFunction")[env.IOT_DATA_ENDPOINT] == {
        "Fn::GetAtt": ["IotEndpoint", "Url"]
    }
