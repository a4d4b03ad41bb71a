"""Commands to fleet devices that a pipeline task waits for: the
:class:`aios.events.task.DeviceCommands` of ``aios up`` runs and of the cloud's pipeline
task functions.

:class:`FleetCommands` sends through :meth:`aios.fleet.service.FleetService.send_command`
— so the command is stored in the device's history and published on
``cmd/aios/{connector}/req`` like a command from the console — and then reads the stored
command until the device's answer completes it (the process's ingester, or the cloud's
command-response function, records the answer on the same store) or its deadline passes.
The store is read every :data:`POLL_SECONDS`, doubling up to :data:`MAX_POLL_SECONDS`.

Outcomes:

* ``succeeded`` → :class:`~aios.events.task.CommandAnswer` with the device's response;
* ``failed`` → :class:`~aios.events.task.PermanentError` with the device's reason, except
  a failure the device marks retryable — ``response.retryable`` true, or a Modbus
  exception code of :data:`aios.plc.modbus.RETRYABLE_EXCEPTION_CODES` (ACKNOWLEDGE,
  SERVER DEVICE BUSY, GATEWAY TARGET DEVICE FAILED TO RESPOND) — which is a
  :class:`~aios.events.task.TransientError`;
* no answer by the deadline (``timed_out``, or still pending) → ``TransientError``;
* refused before sending: no such device or invalid parameters → ``PermanentError``; no
  link to the devices (the broker, IoT Core) → ``TransientError``.

**Time budget.** A caller that must return by a deadline (a Lambda invocation) runs the
task inside :func:`time_budget`: the command's timeout is then cut to the time left less
:data:`BUDGET_MARGIN_SECONDS` (so the connector does not act after the task gave up), and
with less than :data:`MIN_COMMAND_SECONDS` left the command is not sent
(``TransientError``: the state machine's ``Retry`` calls the task again, with a new budget).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from aios.domain import Command, CommandStatus
from aios.events.task import CommandAnswer, PermanentError, TransientError
from aios.plc.modbus import RETRYABLE_EXCEPTION_CODES
from aios.store.port import NotFound

if TYPE_CHECKING:
    from aios.fleet.service import FleetService

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
"""First interval between two reads of the command while waiting, s."""

MAX_POLL_SECONDS = 0.5
"""Longest interval between two reads of the command while waiting, s."""

ANSWER_GRACE_SECONDS = 0.25
"""Read the command this long after its deadline once more (an answer recorded just
before the deadline), s."""

BUDGET_MARGIN_SECONDS = 2.0
"""Time kept back from a :func:`time_budget` for the task to return its result, s."""

MIN_COMMAND_SECONDS = 0.5
"""Least time a command is given; with less left in the budget it is not sent, s."""

_BUDGET: ContextVar[Callable[[], float] | None] = ContextVar("aios_command_budget", default=None)


@contextmanager
def time_budget(remaining_seconds: Callable[[], float] | None) -> Iterator[None]:
    """Bound the commands sent in the block by ``remaining_seconds()`` (the seconds the
    caller has left, e.g. a Lambda context's remaining time / 1000); ``None``: no bound."""
    token = _BUDGET.set(remaining_seconds)
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _retryable(response: dict[str, Any] | None) -> bool:
    if not isinstance(response, dict):
        return False
    if response.get("retryable") is True:
        return True
    code = response.get("exception_code")
    return isinstance(code, int) and code in RETRYABLE_EXCEPTION_CODES


class FleetCommands:
    """:class:`aios.events.task.DeviceCommands` over a :class:`FleetService` (see the
    module doc).

    Args:
        fleet: the fleet of this process (its store holds the commands; its services'
            link publishes them).
        sleep, monotonic: waiting and its clock (for tests).
    """

    def __init__(
        self,
        fleet: FleetService,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fleet = fleet
        self._sleep = sleep
        self._monotonic = monotonic

    def send(
        self,
        device_id: str,
        name: str,
        params: dict[str, Any],
        timeout_seconds: float,
        *,
        actor: str | None = None,
    ) -> CommandAnswer:
        """Send ``name`` to ``device_id`` and wait for its answer (see the module doc).

        Raises:
            PermanentError: refused, or the device answered with a failure.
            TransientError: no answer in time, no link, or no time left in the budget.
        """
        from aios.fleet.service import DeviceUnreachable, InvalidRequest

        timeout = float(timeout_seconds)
        budget = _BUDGET.get()
        if budget is not None:
            left = budget() - BUDGET_MARGIN_SECONDS
            if left < MIN_COMMAND_SECONDS:
                raise TransientError(
                    f"{name} to {device_id} not sent: {max(0.0, left):.1f} s left in this "
                    "invocation, too little to wait for the answer"
                )
            timeout = min(timeout, left)
        try:
            command = self.fleet.send_command(
                device_id, name, params, actor=actor, timeout_seconds=timeout
            )
        except NotFound as err:
            raise PermanentError(f"{name} to {device_id}: {err}") from err
        except InvalidRequest as err:
            raise PermanentError(f"{name} to {device_id} refused: {err}") from err
        except DeviceUnreachable as err:
            raise TransientError(f"{name} to {device_id} not sent: {err}") from err
        done = self._wait(command, timeout)
        return self._outcome(done or command, timeout)

    def _wait(self, command: Command, timeout: float) -> Command | None:
        """The command once it is no longer pending, or ``None`` at its deadline."""
        deadline = self._monotonic() + timeout + ANSWER_GRACE_SECONDS
        interval = POLL_SECONDS
        while True:
            current = self.fleet.store.commands.get(command.request_id)
            if current is not None and current.status is not CommandStatus.PENDING:
                return current
            left = deadline - self._monotonic()
            if left <= 0:
                return None
            self._sleep(min(interval, left))
            interval = min(interval * 2, MAX_POLL_SECONDS)

    def _outcome(self, command: Command, timeout: float) -> CommandAnswer:
        what = f"{command.name} to {command.device_id} (request {command.request_id})"
        if command.status is CommandStatus.SUCCEEDED:
            return CommandAnswer(command.request_id, dict(command.response or {}))
        if command.status is CommandStatus.FAILED:
            reason = command.error or "no reason given"
            if _retryable(command.response):
                raise TransientError(f"{what} failed, may pass: {reason}")
            raise PermanentError(f"{what} failed: {reason}")
        log.info("command %s: no answer within %.1f s", command.request_id, timeout)
        raise TransientError(
            f"{what}: no answer within {timeout:g} s; is the device's connector online and "
            "the device answering?"
        )
