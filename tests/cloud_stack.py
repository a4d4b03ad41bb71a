"""The resources of ``template.yaml``, created in moto: tests of the cloud side run against
what the template deploys, not against a hand-made copy of it.

:meth:`CloudStack.create` (inside an active ``mock_aws``) reads the template with cfn-lint's
YAML decoder, expands the SAM resources with aws-sam-translator (the transform CloudFormation
applies), evaluates conditions and intrinsic functions (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``,
``Fn::Join``, ``Fn::If``, ``Fn::Select``, ``Fn::Split``, ``Fn::FindInMap``, ``Fn::Equals``…)
and creates, with boto3, the resource types moto emulates: IAM roles, SQS queues, SNS topics,
DynamoDB tables, S3 buckets, Secrets Manager secrets (generated strings included), Lambda
functions (a stand-in package; their ``Handler`` and ``Environment`` as in the template), Step
Functions state machines (``DefinitionString`` / ``DefinitionS3Location`` read from the
repository file the SAM ``DefinitionUri`` named, ``DefinitionSubstitutions`` applied), ECS
clusters and task definitions, EventBridge Scheduler groups and IoT policies. Other resources
(API Gateway, CloudFront, alarms, custom resources…) are not created; their ``Ref`` and
attributes resolve to stand-in strings such as ``"<Api>"`` /
``"<ConsoleDistribution.DomainName>"``.

:meth:`CloudStack.bind_handlers` makes Lambda invocations — by a test, or by a state machine's
Task — run the real handler named by the function's ``Handler`` (``functions.api.handler``)
in this process, with ``os.environ`` set to the function's environment for the duration of
the call, and errors reported as the Lambda Python runtime reports them (``errorType`` = the
exception class's ``__name__``, header ``X-Amz-Function-Error: Unhandled``). Functions of
different environments share this process: handlers must cache per-container state keyed by
the environment values it depends on.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import importlib
import io
import json
import os
import re
import secrets
import string
import threading
import zipfile
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.awslambda_simple.models import LambdaSimpleBackend

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"
"""moto's default account id."""

DEFAULT_PARAMETERS = {"Stage": "test"}

_PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "aios-test",
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/aios-test/1",
    "AWS::NotificationARNs": [],
}
_NO_VALUE = object()
ENVIRONMENT_LOCK = threading.RLock()
"""Held while the process's environment is changed for a whole stack (set-up, tear-down)."""


class TemplateError(AssertionError):
    """The template cannot be read or resolved (a test failure, not an environment problem)."""


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """Return the template as plain JSON-like data (short-form tags as ``{"Ref": …}`` etc.)."""
    from cfnlint.decode import decode

    template, matches = decode(str(path))
    if template is None or matches:
        raise TemplateError(f"{path} does not parse: {[str(m) for m in matches]}")
    return json.loads(json.dumps(template))


class _PolicyLoader:
    """Managed policy names → ARNs for the SAM translator, without calling IAM."""

    def load(self) -> dict[str, str]:
        names = (
            "AWSLambdaBasicExecutionRole",
            "AWSLambdaVPCAccessExecutionRole",
            "AWSXrayWriteOnlyAccess",
            "AWSXRayDaemonWriteAccess",
            "AWSLambdaRole",
            "CloudWatchLogsFullAccess",
        )
        return {
            name: f"arn:aws:iam::aws:policy/service-role/{name}"
            if name.startswith("AWSLambda")
            else f"arn:aws:iam::aws:policy/{name}"
            for name in names
        }


def packaged(template: dict[str, Any], root: Path = ROOT) -> dict[str, Any]:
    """Return ``template`` as ``sam package`` would leave it for the transform: local
    ``CodeUri``/``ContentUri`` become S3 URIs, and a local state machine ``DefinitionUri``
    becomes the inline ``Definition`` read from that file.

    Raises:
        TemplateError: a ``DefinitionUri`` that is not a JSON file of the repository.
    """
    result = copy.deepcopy(template)
    sections = [result.get("Globals", {}).get("Function", {})]
    sections += [r.get("Properties", {}) for r in (result.get("Resources") or {}).values()]
    for props in sections:
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://packaged-artifacts/{props[key].strip('./') or 'root'}"
        uri = props.get("DefinitionUri")
        if isinstance(uri, str) and not uri.startswith("s3://"):
            path = root / uri
            if not path.is_file():
                raise TemplateError(f"DefinitionUri {uri} is not a file of the repository")
            props.pop("DefinitionUri")
            props["Definition"] = json.loads(path.read_text())
    return result


def transform(
    template: dict[str, Any], parameters: dict[str, Any], root: Path = ROOT
) -> dict[str, Any]:
    """Expand the SAM resources of ``template`` into CloudFormation (aws-sam-translator),
    after :func:`packaged`."""
    import boto3.session
    import samtranslator.sdk.parameter as sam_parameter
    from samtranslator.translator.arn_generator import ArnGenerator
    from samtranslator.translator.transform import transform as sam_transform

    # The translator reads the region from a default boto3 session; give it ours.
    session = boto3.session.Session(region_name=REGION)
    original = sam_parameter.SamParameterValues.add_pseudo_parameter_values

    def add_pseudo(self: Any, _session: Any = None) -> None:
        original(self, session)

    sam_parameter.SamParameterValues.add_pseudo_parameter_values = add_pseudo  # type: ignore[method-assign]
    ArnGenerator.BOTO_SESSION_REGION_NAME = REGION
    try:
        return sam_transform(packaged(template, root), dict(parameters), _PolicyLoader())
    finally:
        sam_parameter.SamParameterValues.add_pseudo_parameter_values = original  # type: ignore[method-assign]  # type: ignore[arg-type]


@functools.cache
def _transformed(path: str, parameters_json: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The transformed template and its parameter values (cached: the transform takes
    about a second; callers get copies)."""
    sam = load_template(Path(path))
    declared = sam.get("Parameters") or {}
    values: dict[str, Any] = {
        n: spec["Default"] for n, spec in declared.items() if "Default" in spec
    }
    values.update({k: v for k, v in DEFAULT_PARAMETERS.items() if k in declared})
    values.update(json.loads(parameters_json))
    for name, spec in declared.items():
        if name not in values:
            raise TemplateError(f"parameter {name} has no default: pass it to CloudStack.create")
        if str(spec.get("Type", "")).startswith("List<") and isinstance(values[name], str):
            values[name] = [v for v in values[name].split(",") if v]
        elif spec.get("Type") == "CommaDelimitedList" and isinstance(values[name], str):
            values[name] = values[name].split(",")
    return transform(sam, values, Path(path).parent), values


def _zip_stub() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


@dataclass
class CloudStack:
    """The template's resources in moto.

    Attributes:
        template: the CloudFormation template after the SAM transform.
        parameters: parameter values (defaults of the template, then the given ones).
        physical: logical id → what ``Ref`` returns (a name, ARN or URL, as CloudFormation).
        attributes: ``"Logical.Attribute"`` → value of ``Fn::GetAtt``.
        created: logical ids of the resources created in moto.
        functions: logical id of each Lambda function → its resolved properties.
    """

    template: dict[str, Any]
    parameters: dict[str, Any]
    physical: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)
    conditions: dict[str, bool] = field(default_factory=dict)
    _names: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ building

    @classmethod
    def create(
        cls,
        path: Path | str = TEMPLATE,
        parameters: dict[str, Any] | None = None,
        *,
        only: set[str] | None = None,
    ) -> CloudStack:
        """Create the template's resources in the active ``mock_aws``.

        Args:
            path: the SAM template.
            parameters: parameter values over the template's defaults and
                :data:`DEFAULT_PARAMETERS`.
            only: create just these logical ids (the others resolve to stand-ins).

        Raises:
            TemplateError: unreadable template, a required parameter without a value, an
                intrinsic this helper cannot resolve.
        """
        key = json.dumps(parameters or {}, sort_keys=True)
        cfn, values = copy.deepcopy(_transformed(str(Path(path).resolve()), key))
        stack = cls(template=cfn, parameters=values)
        stack._evaluate_conditions()
        stack._create_resources(only)
        return stack

    def _evaluate_conditions(self) -> None:
        pending = dict(self.template.get("Conditions") or {})
        for _ in range(len(pending) + 1):
            for name, expr in list(pending.items()):
                try:
                    self.conditions[name] = bool(self.resolve(expr))
                except KeyError:
                    continue
                del pending[name]
        if pending:
            raise TemplateError(f"conditions that cannot be evaluated: {sorted(pending)}")

    def _resources(self) -> dict[str, dict[str, Any]]:
        return {
            lid: res
            for lid, res in (self.template.get("Resources") or {}).items()
            if "Condition" not in res or self.conditions.get(res["Condition"], False)
        }

    def _create_resources(self, only: set[str] | None) -> None:
        resources = self._resources()
        # Stand-ins first, so every Ref/GetAtt resolves; creation replaces them.
        for lid in resources:
            self.physical.setdefault(lid, f"<{lid}>")
        self._preassign(resources)
        order = [
            "AWS::IAM::Role",
            "AWS::SQS::Queue",
            "AWS::SNS::Topic",
            "AWS::DynamoDB::Table",
            "AWS::S3::Bucket",
            "AWS::SecretsManager::Secret",
            "AWS::Logs::LogGroup",
            "AWS::ECS::Cluster",
            "AWS::ECS::TaskDefinition",
            "AWS::Scheduler::ScheduleGroup",
            "AWS::IoT::Policy",
            "AWS::Lambda::Function",
            "AWS::StepFunctions::StateMachine",
        ]
        makers: dict[str, Callable[[str, dict[str, Any]], None]] = {
            "AWS::IAM::Role": self._role,
            "AWS::SQS::Queue": self._queue,
            "AWS::SNS::Topic": self._topic,
            "AWS::DynamoDB::Table": self._table,
            "AWS::S3::Bucket": self._bucket,
            "AWS::SecretsManager::Secret": self._secret,
            "AWS::Logs::LogGroup": self._log_group,
            "AWS::ECS::Cluster": self._cluster,
            "AWS::ECS::TaskDefinition": self._task_definition,
            "AWS::Scheduler::ScheduleGroup": self._schedule_group,
            "AWS::IoT::Policy": self._iot_policy,
            "AWS::Lambda::Function": self._function,
            "AWS::StepFunctions::StateMachine": self._state_machine,
        }
        for kind in order:
            for lid, res in resources.items():
                if res["Type"] == kind and (only is None or lid in only):
                    makers[kind](lid, self.resolve(res.get("Properties") or {}))
                    self.created.append(lid)
        self._custom_resources(resources, only)
        self._refresh_environments()
        # Inline role policies last: they name resources created after the roles.
        iam = aws_client("iam")
        for lid, res in resources.items():
            if res["Type"] != "AWS::IAM::Role" or lid not in self.created:
                continue
            for policy in self.resolve((res.get("Properties") or {}).get("Policies") or []):
                document = {"Version": "2012-10-17", **policy["PolicyDocument"]}
                # A resource not created here (``only``) is a stand-in such as "<Queue.Arn>":
                # IAM wants an ARN, so it becomes one that names nothing.
                text = re.sub(
                    r'"<([^">]*)>"',
                    rf'"arn:aws:iam::{ACCOUNT}:role/not-created/\1"',
                    json.dumps(document),
                )
                iam.put_role_policy(
                    RoleName=self.physical[lid],
                    PolicyName=policy["PolicyName"],
                    PolicyDocument=text,
                )

    def _custom_resources(
        self, resources: dict[str, dict[str, Any]], only: set[str] | None
    ) -> None:
        """Run each custom resource whose provider is a function of the stack, as
        CloudFormation does: its real handler gets a ``Create`` request whose
        ``ResponseURL`` is a server on 127.0.0.1; the ``Data`` it answers become the
        resource's attributes.

        Raises:
            TemplateError: the provider answered ``FAILED`` or nothing.
        """
        for lid, res in resources.items():
            kind = res["Type"]
            if not (kind.startswith("Custom::") or kind == "AWS::CloudFormation::CustomResource"):
                continue
            props = self.resolve(res.get("Properties") or {})
            token = str(props.pop("ServiceToken", ""))
            if (only is not None and lid not in only) or ":function:" not in token:
                continue
            answer = _custom_resource_answer(
                lambda url, lid=lid, kind=kind, props=props, token=token: self.invoke_local(
                    token,
                    {
                        "RequestType": "Create",
                        "ResponseURL": url,
                        "StackId": _PSEUDO["AWS::StackId"],
                        "RequestId": secrets.token_hex(8),
                        "LogicalResourceId": lid,
                        "ResourceType": kind,
                        "ResourceProperties": {"ServiceToken": token, **props},
                    },
                )
            )
            if answer.get("Status") != "SUCCESS":
                raise TemplateError(f"custom resource {lid} failed: {answer.get('Reason')}")
            self.physical[lid] = answer.get("PhysicalResourceId", lid)
            for key, value in (answer.get("Data") or {}).items():
                self.attributes[f"{lid}.{key}"] = value
            self.created.append(lid)

    def _refresh_environments(self) -> None:
        """Resolve the functions' environments again once every resource exists (the first
        pass saw stand-ins for what was created after them) and update them in moto."""
        for lid, spec in self.functions.items():
            res = self.template["Resources"][lid]
            variables = ((res.get("Properties") or {}).get("Environment") or {}).get("Variables")
            environment = {k: _text(v) for k, v in (self.resolve(variables or {})).items()}
            if environment != spec["environment"]:
                spec["environment"] = environment
                aws_client("lambda").update_function_configuration(
                    FunctionName=spec["name"], Environment={"Variables": environment}
                )

    def _name(self, lid: str, props: dict[str, Any], key: str) -> str:
        if lid in self._names:
            return self._names[lid]
        value = props.get(key)
        if isinstance(value, str) and value:
            return value
        # CloudFormation's generated names: <stack>-<logical id>-<suffix>, lower case for S3
        return f"aios-test-{lid}-{secrets.token_hex(4)}"

    def _preassign(self, resources: dict[str, dict[str, Any]]) -> None:
        """Name every resource whose ARN follows from its name before creating any, so a
        function's environment can name a function created after it (CloudFormation
        resolves the graph; creation order here is by type)."""
        r, a = REGION, ACCOUNT
        formats = {
            "AWS::Lambda::Function": ("FunctionName", 64, f"arn:aws:lambda:{r}:{a}:function:{{}}"),
            "AWS::StepFunctions::StateMachine": (
                "StateMachineName",
                80,
                f"arn:aws:states:{r}:{a}:stateMachine:{{}}",
            ),
            "AWS::IAM::Role": ("RoleName", 64, f"arn:aws:iam::{a}:role/{{}}"),
            "AWS::DynamoDB::Table": ("TableName", 255, f"arn:aws:dynamodb:{r}:{a}:table/{{}}"),
            "AWS::SNS::Topic": ("TopicName", 256, f"arn:aws:sns:{r}:{a}:{{}}"),
        }
        for lid, res in resources.items():
            spec = formats.get(res["Type"])
            if spec is None:
                continue
            key, limit, arn = spec
            props = res.get("Properties") or {}
            name = self.resolve(props.get(key)) if key in props else None
            if not isinstance(name, str) or "<" in name:
                name = f"aios-test-{lid}-{secrets.token_hex(4)}"
            name = name[:limit]
            self._names[lid] = name
            self.attributes[f"{lid}.Arn"] = arn.format(name)
            self.physical[lid] = (
                self.attributes[f"{lid}.Arn"]
                if res["Type"]
                in (
                    "AWS::StepFunctions::StateMachine",
                    "AWS::SNS::Topic",
                )
                else name
            )
            if res["Type"] == "AWS::StepFunctions::StateMachine":
                self.attributes[f"{lid}.Name"] = name

    def _role(self, lid: str, props: dict[str, Any]) -> None:
        iam = aws_client("iam")
        name = self._name(lid, props, "RoleName")[:64]
        role = iam.create_role(
            RoleName=name,
            Path=props.get("Path", "/"),
            AssumeRolePolicyDocument=json.dumps(props.get("AssumeRolePolicyDocument") or {}),
        )["Role"]
        self.physical[lid] = name
        self.attributes[f"{lid}.Arn"] = role["Arn"]
        self.attributes[f"{lid}.RoleId"] = role["RoleId"]

    def _queue(self, lid: str, props: dict[str, Any]) -> None:
        sqs = aws_client("sqs")
        name = self._name(lid, props, "QueueName")
        attrs = {
            k: str(v)
            for k, v in props.items()
            if k
            in (
                "MessageRetentionPeriod",
                "VisibilityTimeout",
                "KmsMasterKeyId",
                "SqsManagedSseEnabled",
            )
        }
        url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
        self.physical[lid] = url
        self.attributes[f"{lid}.QueueName"] = name
        self.attributes[f"{lid}.Arn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"

    def _topic(self, lid: str, props: dict[str, Any]) -> None:
        sns = aws_client("sns")
        arn = sns.create_topic(Name=self._name(lid, props, "TopicName"))["TopicArn"]
        self.physical[lid] = arn
        self.attributes[f"{lid}.TopicArn"] = arn

    def _table(self, lid: str, props: dict[str, Any]) -> None:
        ddb = aws_client("dynamodb")
        name = self._name(lid, props, "TableName")
        request: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        if props.get("GlobalSecondaryIndexes"):
            request["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if props.get("ProvisionedThroughput"):
            request["ProvisionedThroughput"] = props["ProvisionedThroughput"]
        if props.get("StreamSpecification"):
            request["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        if props.get("SSESpecification"):
            request["SSESpecification"] = {
                "Enabled": bool(props["SSESpecification"].get("SSEEnabled"))
            }
        table = ddb.create_table(**request)["TableDescription"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        self.physical[lid] = name
        self.attributes[f"{lid}.Arn"] = table["TableArn"]
        if table.get("LatestStreamArn"):
            self.attributes[f"{lid}.StreamArn"] = table["LatestStreamArn"]

    def _bucket(self, lid: str, props: dict[str, Any]) -> None:
        s3 = boto3.client("s3", region_name=REGION)
        name = self._name(lid, props, "BucketName").lower()[:63]
        s3.create_bucket(Bucket=name)
        if props.get("VersioningConfiguration"):
            s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration=props["VersioningConfiguration"]
            )
        if props.get("PublicAccessBlockConfiguration"):
            s3.put_public_access_block(
                Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
            )
        self.physical[lid] = name
        self.attributes[f"{lid}.Arn"] = f"arn:aws:s3:::{name}"
        self.attributes[f"{lid}.DomainName"] = f"{name}.s3.amazonaws.com"
        self.attributes[f"{lid}.RegionalDomainName"] = f"{name}.s3.{REGION}.amazonaws.com"

    def _secret(self, lid: str, props: dict[str, Any]) -> None:
        client = aws_client("secretsmanager")
        name = self._name(lid, props, "Name")
        value = props.get("SecretString")
        generate = props.get("GenerateSecretString")
        if value is None and generate is not None:
            length = int(generate.get("PasswordLength", 32))
            alphabet = string.ascii_letters + string.digits
            if not generate.get("ExcludePunctuation"):
                alphabet += "!#$%&()*+,-.:;<=>?[]^_{|}~"
            excluded = set(generate.get("ExcludeCharacters", ""))
            alphabet = "".join(c for c in alphabet if c not in excluded)
            generated = "".join(secrets.choice(alphabet) for _ in range(length))
            template = generate.get("SecretStringTemplate")
            if template:
                data = json.loads(template)
                data[generate["GenerateStringKey"]] = generated
                value = json.dumps(data)
            else:
                value = generated
        arn = client.create_secret(Name=name, SecretString=value or "")["ARN"]
        self.physical[lid] = arn

    def _log_group(self, lid: str, props: dict[str, Any]) -> None:
        logs = aws_client("logs")
        name = self._name(lid, props, "LogGroupName")
        logs.create_log_group(logGroupName=name)
        self.physical[lid] = name
        self.attributes[f"{lid}.Arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"

    def _cluster(self, lid: str, props: dict[str, Any]) -> None:
        ecs = aws_client("ecs")
        cluster = ecs.create_cluster(clusterName=self._name(lid, props, "ClusterName"))["cluster"]
        self.physical[lid] = cluster["clusterName"]
        self.attributes[f"{lid}.Arn"] = cluster["clusterArn"]

    def _task_definition(self, lid: str, props: dict[str, Any]) -> None:
        ecs = aws_client("ecs")

        def lower_first(value: Any) -> Any:
            if isinstance(value, dict):
                return {k[:1].lower() + k[1:]: lower_first(v) for k, v in value.items()}
            if isinstance(value, list):
                return [lower_first(v) for v in value]
            return value

        containers = []
        for container in props.get("ContainerDefinitions") or []:
            spec = lower_first(container)
            if "environment" in spec:  # names and values are data, keep them as written
                spec["environment"] = [
                    {"name": e["Name"], "value": str(e["Value"])} for e in container["Environment"]
                ]
            containers.append(spec)
        request: dict[str, Any] = {
            "family": self._name(lid, props, "Family"),
            "containerDefinitions": containers,
        }
        for key, arg in (
            ("TaskRoleArn", "taskRoleArn"),
            ("ExecutionRoleArn", "executionRoleArn"),
            ("NetworkMode", "networkMode"),
            ("Cpu", "cpu"),
            ("Memory", "memory"),
        ):
            if props.get(key) is not None:
                request[arg] = str(props[key])
        if props.get("RequiresCompatibilities"):
            request["requiresCompatibilities"] = props["RequiresCompatibilities"]
        arn = ecs.register_task_definition(**request)["taskDefinition"]["taskDefinitionArn"]
        self.physical[lid] = arn

    def _schedule_group(self, lid: str, props: dict[str, Any]) -> None:
        scheduler = aws_client("scheduler")
        name = self._name(lid, props, "Name")
        arn = scheduler.create_schedule_group(Name=name)["ScheduleGroupArn"]
        self.physical[lid] = name
        self.attributes[f"{lid}.Arn"] = arn

    def _iot_policy(self, lid: str, props: dict[str, Any]) -> None:
        iot = aws_client("iot")
        name = self._name(lid, props, "PolicyName")
        policy = iot.create_policy(
            policyName=name, policyDocument=json.dumps(props["PolicyDocument"])
        )
        self.physical[lid] = name
        self.attributes[f"{lid}.Arn"] = policy["policyArn"]

    def _function(self, lid: str, props: dict[str, Any]) -> None:
        client = aws_client("lambda")
        name = self._name(lid, props, "FunctionName")[:64]
        environment = {
            k: _text(v)
            for k, v in ((props.get("Environment") or {}).get("Variables") or {}).items()
        }
        response = client.create_function(
            FunctionName=name,
            Runtime=props.get("Runtime", "python3.11"),
            Role=props["Role"],
            Handler=props["Handler"],
            Code={"ZipFile": _zip_stub()},
            Timeout=int(props.get("Timeout", 3)),
            MemorySize=int(props.get("MemorySize", 128)),
            Environment={"Variables": environment},
        )
        self.physical[lid] = name
        self.attributes[f"{lid}.Arn"] = response["FunctionArn"]
        self.functions[lid] = {
            "name": name,
            "arn": response["FunctionArn"],
            "handler": props["Handler"],
            "environment": environment,
            "timeout": int(props.get("Timeout", 3)),
        }

    def _state_machine(self, lid: str, props: dict[str, Any]) -> None:
        sfn = aws_client("stepfunctions")
        if "DefinitionString" in props:
            text = _text(props["DefinitionString"])
        elif "Definition" in props:
            text = json.dumps(props["Definition"])
        elif "DefinitionS3Location" in props:
            text = self._definition_file(props["DefinitionS3Location"]).read_text()
        else:
            raise TemplateError(f"{lid}: no definition")
        for key, value in (props.get("DefinitionSubstitutions") or {}).items():
            text = text.replace("${" + key + "}", _text(value))
        left = re.findall(r"\$\{([A-Za-z0-9_]+)\}", text)
        if left:
            raise TemplateError(f"{lid}: placeholders without a substitution: {sorted(set(left))}")
        name = self._name(lid, props, "StateMachineName")[:80]
        arn = sfn.create_state_machine(
            name=name,
            definition=text,
            roleArn=props["RoleArn"],
            type=props.get("StateMachineType", "STANDARD"),
        )["stateMachineArn"]
        self.physical[lid] = arn
        self.attributes[f"{lid}.Name"] = name
        self.attributes[f"{lid}.Arn"] = arn

    def _definition_file(self, location: Any) -> Path:
        """The repository file a SAM ``DefinitionUri`` named (the translator keeps local
        paths as the ``Key``/``Uri`` of ``DefinitionS3Location`` until ``sam package``)."""
        candidates: list[str] = []
        if isinstance(location, str):
            candidates.append(location)
        elif isinstance(location, dict):
            candidates.extend(str(v) for v in location.values())
        for candidate in candidates:
            path = ROOT / candidate
            if path.is_file():
                return path
        raise TemplateError(f"definition {location!r} is not a file of the repository")

    # ------------------------------------------------------------------ intrinsics

    def resolve(self, value: Any) -> Any:
        """Evaluate the intrinsic functions in ``value`` (``AWS::NoValue`` entries removed).

        Raises:
            TemplateError: an intrinsic this helper does not know.
            KeyError: a condition not evaluated yet (only while evaluating conditions).
        """
        result = self._resolve(value)
        return None if result is _NO_VALUE else result

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [r for r in (self._resolve(v) for v in value) if r is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Condition" and isinstance(arg, str):
                return self.conditions[arg]
            if key.startswith("Fn::"):
                return self._function_call(key, arg)
        return {
            k: r for k, r in ((k, self._resolve(v)) for k, v in value.items()) if r is not _NO_VALUE
        }

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in _PSEUDO:
            return _PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical:
            return self.physical[name]
        raise TemplateError(f"Ref {name}: no such parameter or resource")

    def _get_att(self, lid: str, attribute: str) -> Any:
        key = f"{lid}.{attribute}"
        if key in self.attributes:
            return self.attributes[key]
        if lid in self.physical:
            return f"<{key}>"
        raise TemplateError(f"Fn::GetAtt {key}: no such resource")

    def _function_call(self, key: str, arg: Any) -> Any:
        if key == "Fn::GetAtt":
            if isinstance(arg, str):
                lid, _, attribute = arg.partition(".")
            else:
                lid, attribute = arg[0], self._resolve(arg[1])
            return self._get_att(lid, attribute)
        if key == "Fn::Sub":
            if isinstance(arg, str):
                text, variables = arg, {}
            else:
                text, variables = arg[0], {k: self._resolve(v) for k, v in arg[1].items()}

            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if name.startswith("!"):
                    return "${" + name[1:] + "}"
                if name in variables:
                    return _text(variables[name])
                if "." in name:
                    lid, _, attribute = name.partition(".")
                    return _text(self._get_att(lid, attribute))
                return _text(self._ref(name))

            return re.sub(r"\$\{([^}]+)\}", substitute, text)
        if key == "Fn::Join":
            sep, items = arg
            return _text(sep).join(_text(i) for i in self._resolve(items))
        if key == "Fn::If":
            name, yes, no = arg
            return self._resolve(yes if self.conditions[name] else no)
        if key == "Fn::Equals":
            a, b = (self._resolve(x) for x in arg)
            return _text(a) == _text(b)
        if key == "Fn::Not":
            return not self._resolve(arg[0])
        if key == "Fn::And":
            return all(self._resolve(x) for x in arg)
        if key == "Fn::Or":
            return any(self._resolve(x) for x in arg)
        if key == "Fn::Select":
            index, items = arg
            return self._resolve(items)[int(self._resolve(index))]
        if key == "Fn::Split":
            sep, text = arg
            return _text(self._resolve(text)).split(sep)
        if key == "Fn::FindInMap":
            mapping, top, second = (self._resolve(x) for x in arg)
            return self.template["Mappings"][mapping][top][second]
        if key == "Fn::GetAZs":
            return [f"{REGION}a", f"{REGION}b"]
        if key == "Fn::Base64":
            return self._resolve(arg)
        if key == "Fn::ToJsonString":
            return json.dumps(self._resolve(arg))
        if key in ("Fn::ImportValue", "Fn::Cidr", "Fn::Transform"):
            return f"<{key}>"
        raise TemplateError(f"{key} is not supported by the test stack")

    # ------------------------------------------------------------------ using it

    def environment(self, logical_id: str) -> dict[str, str]:
        """The environment variables of a function of the template (resolved)."""
        return dict(self.functions[logical_id]["environment"])

    def apply_environment(self, logical_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Set the function's environment variables in this process (for the test)."""
        for key, value in self.environment(logical_id).items():
            monkeypatch.setenv(key, value)

    def function_by_name(self, name: str) -> dict[str, Any]:
        """The function whose name (or ARN) is ``name``."""
        name = name.rsplit(":function:", maxsplit=1)[-1].split(":", maxsplit=1)[0]
        for spec in self.functions.values():
            if spec["name"] == name:
                return spec
        raise KeyError(f"no function named {name!r} in the stack")

    def invoke_local(self, logical_or_name: str, payload: Any) -> Any:
        """Call the real handler of a function with ``payload`` under its environment, as
        its container would; exceptions propagate."""
        spec = (
            self.functions[logical_or_name]
            if logical_or_name in self.functions
            else self.function_by_name(logical_or_name)
        )
        handler = _import_handler(spec["handler"])
        with environment(spec["environment"]):
            return handler(payload, LambdaContext(spec))

    def bind_handlers(self, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
        """Make moto's Lambda invocations run the real handlers (see the module doc).

        Returns:
            The log of invocations, appended to as they happen: ``{"function": logical id,
            "payload": …, "error": errorType or None}``.
        """
        calls: list[dict[str, Any]] = []
        by_name = {spec["name"]: lid for lid, spec in self.functions.items()}

        def invoke(  # noqa: PLR0917 - LambdaSimpleBackend.invoke's signature
            backend: Any,
            function_name: str,
            qualifier: str | None,
            body: Any,
            headers: Any,
            response_headers: dict[str, str],
        ) -> bytes:
            name = function_name.rsplit(":function:", maxsplit=1)[-1].split(":", maxsplit=1)[0]
            lid = by_name[name]
            payload = json.loads(body) if body else {}
            record: dict[str, Any] = {"function": lid, "payload": payload, "error": None}
            calls.append(record)
            try:
                result = self.invoke_local(lid, payload)
            except Exception as err:
                record["error"] = type(err).__name__
                record["message"] = str(err)
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps(
                    {"errorType": type(err).__name__, "errorMessage": str(err)}
                ).encode()
            return json.dumps(result).encode()

        monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
        return calls


class LambdaContext:
    """The parts of Lambda's context object handlers and Powertools read."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.function_name = spec["name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec["arn"]
        self.memory_limit_in_mb = 512
        self.aws_request_id = secrets.token_hex(16)
        self.log_group_name = f"/aws/lambda/{spec['name']}"
        self.log_stream_name = "test"
        self._deadline_ms = spec["timeout"] * 1000

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left (the function's whole timeout: tests do not count down)."""
        return self._deadline_ms


@functools.cache
def aws_client(service: str) -> Any:
    """One boto3 client per service for every stack (creating one costs about 0.3 s); it
    reaches moto while a ``mock_aws`` is active."""
    return boto3.client(
        service,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)


def _import_handler(path: str) -> Callable[[Any, Any], Any]:
    module_name, _, attribute = path.rpartition(".")
    module = importlib.import_module(module_name.replace("/", "."))
    return getattr(module, attribute)  # type: ignore[no-any-return]


def _custom_resource_answer(send_request: Callable[[str], Any]) -> dict[str, Any]:
    """Serve one PUT on 127.0.0.1 while ``send_request(url)`` runs; return its JSON body."""
    import http.server

    received: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        send_request(f"http://127.0.0.1:{server.server_address[1]}/response")
    finally:
        server.shutdown()
        server.server_close()
    if not received:
        raise TemplateError("the custom resource provider sent no response")
    return json.loads(received[0])  # type: ignore[no-any-return]


_UNSET = object()
_OVERLAY: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "environment_overlay", default=None
)


class _LayeredEnviron(MutableMapping[str, str]):
    """``os.environ`` with a per-thread overlay (:func:`environment`): each Lambda handler
    of the stack sees its function's environment while other threads — moto running a
    state machine's next step, a test answering as a device — see theirs, as separate
    Lambda containers would. Writes go to the process's environment."""

    def __init__(self, base: MutableMapping[str, str]) -> None:
        self.base = base

    def _overlay(self) -> dict[str, Any]:
        return _OVERLAY.get() or {}

    def __getitem__(self, key: str) -> str:
        value = self._overlay().get(key, None)
        if value is _UNSET:
            raise KeyError(key)
        if value is not None:
            return str(value)
        return self.base[key]

    def __setitem__(self, key: str, value: str) -> None:
        self.base[key] = value

    def __delitem__(self, key: str) -> None:
        del self.base[key]

    def __iter__(self) -> Iterator[str]:
        overlay = self._overlay()
        seen = set()
        for key in self.base:
            if overlay.get(key) is not _UNSET:
                seen.add(key)
                yield key
        for key, value in overlay.items():
            if value is not _UNSET and key not in seen:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def copy(self) -> dict[str, str]:
        """A plain dict of what this thread sees (as ``os.environ.copy()``)."""
        return dict(self)


def _install_layered_environ() -> None:
    with ENVIRONMENT_LOCK:
        if not isinstance(os.environ, _LayeredEnviron):
            os.environ = _LayeredEnviron(os.environ)  # type: ignore[assignment]  # noqa: B003


@contextmanager
def environment(values: dict[str, str], unset: frozenset[str] = frozenset()) -> Iterator[None]:
    """For the block, this thread (and only it) sees ``os.environ`` with ``values`` set and
    ``unset`` removed; other threads keep theirs (see :class:`_LayeredEnviron`)."""
    _install_layered_environ()
    overlay = {**(_OVERLAY.get() or {}), **dict.fromkeys(unset, _UNSET), **values}
    token = _OVERLAY.set(overlay)
    try:
        yield
    finally:
        _OVERLAY.reset(token)
