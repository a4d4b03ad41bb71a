"""The ``aios-connector`` command.

::

    aios-connector --config connector.yaml          # run the daemon until SIGTERM/SIGINT
    aios-connector check --config connector.yaml    # validate, try every device once, print a table

Exit codes: 0 success, 1 a device or the platform did not answer (``check``) or the daemon
failed, 2 the configuration is invalid (every problem printed with its line and field), or
a secret it references or a TLS file it names cannot be read.
``SIGHUP`` (or saving the file) applies a changed configuration without restarting the
devices it does not touch; ``SIGTERM``/``SIGINT`` stop devices, flush the queue (up to
``--flush-timeout`` seconds) and exit 0.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from connector.config import ConfigError, ConnectorConfig, SecretError, load_config

EXIT_FAILED = 1
EXIT_INVALID = 2

app = typer.Typer(
    name="aios-connector",
    help="The AIOS on-prem connector: bridges cameras, PLCs and sensors to the platform.",
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="AIOS_CONNECTOR_CONFIG",
        help="The connector's YAML configuration file.",
        show_default=True,
    ),
]


def _err(message: str) -> None:
    typer.echo(message, err=True)


def load_config_or_exit(config: Path) -> ConnectorConfig:
    """The configuration at ``config``, or exit 2 with every problem printed."""
    try:
        return load_config(config)
    except ConfigError as err:
        _err(str(err))
        raise typer.Exit(EXIT_INVALID) from None


@app.callback(invoke_without_command=True)
def main_command(
    ctx: typer.Context,
    config: ConfigOption = Path("connector.yaml"),
    flush_timeout: Annotated[
        float,
        typer.Option(min=0, help="Seconds to keep delivering queued messages when stopping."),
    ] = 10.0,
    watch: Annotated[
        bool, typer.Option(help="Apply the configuration file again when it changes.")
    ] = True,
) -> None:
    """Run the connector daemon (the default command)."""
    if ctx.invoked_subcommand is not None:
        return
    from connector.daemon import Connector
    from connector.logs import configure_logging

    cfg = load_config_or_exit(config)
    configure_logging(cfg.log_level)
    log = logging.getLogger("connector")
    level = [cfg.log_level]

    def on_reload(new: ConnectorConfig) -> None:
        if new.log_level != level[0]:  # the rest is applied by the daemon
            configure_logging(new.log_level)
            level[0] = new.log_level

    try:
        # a platform password that cannot be resolved, unreadable TLS files
        daemon = Connector(cfg, config_path=config, on_reload=on_reload)
    except (SecretError, ValueError) as err:
        _err(f"{config}: {err}")
        raise typer.Exit(EXIT_INVALID) from None
    stop = threading.Event()
    reload = threading.Event()

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        reload.set()
        stop.set()  # wake the loop below

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_hup)
    try:
        daemon.start()
    except SecretError as err:
        _err(f"{config}: {err}")
        raise typer.Exit(EXIT_INVALID) from None
    watcher = threading.Thread(
        target=daemon.run, kwargs={"watch_seconds": 2.0 if watch else None}, daemon=True
    )
    watcher.start()
    while True:
        stop.wait()
        if reload.is_set():
            reload.clear()
            stop.clear()
            try:
                daemon.reload()
            except Exception:  # the running configuration is kept; keep running
                log.exception("applying the changed configuration failed")
            continue
        break
    daemon.stop(flush_timeout=flush_timeout)
    raise typer.Exit(0)


@app.command()
def check(
    config: ConfigOption = Path("connector.yaml"),
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for each device and the broker.")
    ] = 10.0,
) -> None:
    """Validate the configuration, try the platform and every device once, print a table."""
    from connector.check import print_table, run_checks

    cfg = load_config_or_exit(config)
    rows = run_checks(cfg, base=config.resolve().parent, timeout=timeout)
    print_table(rows, out=sys.stdout)
    raise typer.Exit(0 if all(r.ok for r in rows) else EXIT_FAILED)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # python -m connector.cli
    main()
