"""``aios cloud``: provisioning connectors on AWS IoT Core and checking the IoT policy.

Mounted in :mod:`aios.cli` as ``app.add_typer(cloud_app, name="cloud")``.

- ``aios cloud provision-connector THING --out DIR --policy-name P --role-alias A
  [--camera CAM]...``: :func:`aios.cloud.provisioning.provision_connector`;
- ``aios cloud check-policy --thing T --action publish --target dt/aios/T/events``:
  whether the connector policy allows an MQTT request (exit 0 allowed, 1 denied).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from aios.cloud.iot_policy import PolicyError, check, load_template, render_policy
from aios.cloud.provisioning import ProvisioningError, check_thing_name, provision_connector

EXIT_DENIED = 1
EXIT_ERROR = 2

app = typer.Typer(
    help="AWS deployment: connector provisioning and IoT policy checks.", no_args_is_help=True
)


@app.command("provision-connector")
def provision_connector_command(  # noqa: PLR0917 - typer options
    thing: Annotated[str, typer.Argument(help="Connector id = IoT thing name = client id.")],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the certificate, key and connector.yaml.")
    ],
    policy_name: Annotated[
        str, typer.Option("--policy-name", help="IoT policy of the connectors (one per stage).")
    ] = "aios-dev-connector",
    role_alias: Annotated[
        str, typer.Option("--role-alias", help="IoT role alias of video upload.")
    ] = "aios-dev-kvs",
    stage: Annotated[str, typer.Option("--stage", help="Deployment stage.")] = "dev",
    name_prefix: Annotated[str, typer.Option("--name-prefix", help="NamePrefix.")] = "aios",
    camera: Annotated[
        list[str] | None,
        typer.Option("--camera", help="Camera id: create its Kinesis video stream (repeat)."),
    ] = None,
    retention_hours: Annotated[
        int, typer.Option("--retention-hours", help="Stream retention, hours (0: none).")
    ] = 24,
    region: Annotated[str | None, typer.Option("--region", help="AWS region.")] = None,
    update_policy: Annotated[
        bool, typer.Option("--update-policy", help="Replace a different policy document.")
    ] = False,
    new_certificate: Annotated[
        bool, typer.Option("--new-certificate", help="Issue another certificate.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Create (or find) the thing, policy, certificate and streams of a connector and
    write its files; safe to run again."""
    try:
        result = provision_connector(
            thing,
            out,
            policy_name=policy_name,
            role_alias=role_alias,
            stage=stage,
            name_prefix=name_prefix,
            cameras=camera or [],
            retention_hours=retention_hours,
            update_policy=update_policy,
            new_certificate=new_certificate,
            region=region,
        )
    except ProvisioningError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_ERROR) from err
    if as_json:
        payload = {
            "thing_name": result.thing_name,
            "thing_arn": result.thing_arn,
            "certificate_id": result.certificate_id,
            "policy_name": result.policy_name,
            "endpoint": result.endpoint,
            "credentials_endpoint": result.credentials_endpoint,
            "config_path": str(result.config_path),
            "streams": result.streams,
            "created": result.created,
            "notes": result.notes,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(f"connector {result.thing_name}: certificate {result.certificate_id}")
    typer.echo(f"  endpoint mqtts://{result.endpoint}:8883, policy {result.policy_name}")
    for line in result.created or ["nothing to change: everything was in place"]:
        typer.echo(f"  {line}")
    for name in result.streams:
        if f"stream {name}" not in result.created:  # created ones are listed above
            typer.echo(f"  stream {name}")
    for note in result.notes:
        typer.echo(f"  note: {note}")
    typer.echo(f"  check it with: aios-connector check --config {result.config_path}")
    typer.echo(f"  start it with: aios-connector --config {result.config_path}")


@app.command("check-policy")
def check_policy_command(  # noqa: PLR0917 - typer options
    thing: Annotated[str, typer.Option("--thing", help="The thing of the certificate.")],
    action: Annotated[
        str, typer.Option("--action", help="connect, publish, subscribe, receive, assume-role.")
    ],
    target: Annotated[
        str, typer.Option("--target", help="Client id, topic, topic filter or role alias.")
    ],
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="MQTT client id (default: the thing).")
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="A policy document (JSON; default: the connector's)."),
    ] = None,
    region: Annotated[str, typer.Option("--region")] = "us-east-1",
    account: Annotated[str, typer.Option("--account")] = "123456789012",
    role_alias: Annotated[str, typer.Option("--role-alias")] = "aios-dev-kvs",
) -> None:
    """Evaluate one MQTT request of a connector against the IoT policy (offline)."""
    try:
        check_thing_name(thing)
    except ProvisioningError as err:
        typer.echo(f"error: --thing {err}", err=True)
        raise typer.Exit(EXIT_ERROR) from err
    try:
        document = render_policy(
            region=region,
            account=account,
            role_alias=role_alias,
            template=load_template(policy) if policy else None,
        )
        decision = check(
            document,
            action,  # type: ignore[arg-type]  # checked by check()
            target,
            client_id=client_id or thing,
            attached_things=[thing],
            region=region,
            account=account,
        )
    except PolicyError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_ERROR) from err
    verdict = "ALLOW" if decision.allowed else "DENY"
    why = decision.statement or "no statement allows it"
    typer.echo(f"{verdict} {action} {target} ({decision.effect}: {why})")
    if not decision.allowed:
        raise typer.Exit(EXIT_DENIED)
