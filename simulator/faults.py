"""Fault injection syntax for the simulator.

A fault is selected per request by the `x-simulator-fault` header, or by the configured fault
with the configured probability. Accepted forms:

    error:<status>   answer an OpenAI-shaped error with that status (400-599)
    timeout          wait an hour before answering (ends early when the client goes away)
    hang-stream      send headers and the first event (or, not streaming, only the headers),
                     then wait forever
    cut:<k>          streams: k whole events, then half of the next one, then drop the
                     connection; otherwise: headers with the full Content-Length and half the
                     body, then drop. `cut` alone means `cut:0`.
    disconnect       close the connection without any response
    slow:<ms>        answer normally after an extra delay of <ms> milliseconds
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

__all__ = ["ACCEPTED_FAULTS", "FAULT", "FAULT_HEADER", "Fault", "parse_fault"]

FAULT_HEADER = "x-simulator-fault"
ACCEPTED_FAULTS = (
    "error:<status 400-599>",
    "timeout",
    "hang-stream",
    "cut:<k>",
    "disconnect",
    "slow:<ms>",
)


@dataclass(frozen=True, slots=True)
class Fault:
    """A parsed fault: `kind` is one of the names above, `value` its number (0 when none)."""

    kind: str
    value: float = 0


# The fault that applies to a request, kept on it for the endpoint that answers.
FAULT = web.RequestKey("simulator_fault", Fault)


def parse_fault(text: str) -> Fault:
    """Parse a fault string; raise ValueError (naming the accepted forms) when it is not one."""
    spec = text.strip().lower()
    kind, _, arg = spec.partition(":")
    if kind in ("timeout", "hang-stream", "disconnect") and not arg:
        return Fault(kind)
    if kind == "cut":
        number = _number(arg or "0", integer=True)
        if number is not None and number >= 0:
            return Fault("cut", number)
    elif kind == "error":
        number = _number(arg, integer=True)
        if number is not None and 400 <= number <= 599:
            return Fault("error", number)
    elif kind == "slow":
        number = _number(arg, integer=False)
        if number is not None and number >= 0:
            return Fault("slow", number)
    raise ValueError(f"unknown fault {text!r}; accepted: {', '.join(ACCEPTED_FAULTS)}")


def _number(text: str, *, integer: bool) -> float | None:
    try:
        return int(text) if integer else float(text)
    except ValueError:
        return None
