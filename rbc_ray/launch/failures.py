"""Runs that failed: the one-line cause the CLI prints (exit code 1) instead of Ray's nested tracebacks."""

from __future__ import annotations


class TrainingFailed(RuntimeError):
    """A Tune trial or Ray Train run ended in an error; the message is its root cause in one line."""


def root_cause(error: BaseException) -> str:
    """'Type: message' of the exception behind Ray's wrappers (a remote task's error, Ray Train's
    worker-group failure), without their tracebacks."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        failures = getattr(error, "worker_failures", None)  # Ray Train: {rank: exception}
        inner = (next(iter(failures.values())) if failures else None) or getattr(error, "cause", None) \
            or getattr(error, "controller_failure", None)
        if not isinstance(inner, BaseException):
            break
        error = inner
    message = str(error).strip().splitlines()[-1] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}"
