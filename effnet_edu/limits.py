"""Size limits: refuse a network that is too large *before* anything is allocated.

A few characters of input (``--phi 1000``, ``width=1e6``, a weights file whose settings claim a huge depth or
a million classes) describe networks that would eat all memory while being built, or even while their blocks
are listed. Every path that turns user numbers into a network goes through ``EfficientNet.__init__``, which
calls ``check_size`` first; ``arch.blocks`` calls ``check_blocks`` before it lists a single block. The checks
are arithmetic on the architecture (``accounting.count`` takes about a millisecond), never an allocation.

Default bounds (B7, the largest released member, is far inside all three):

- ``MAX_BLOCKS``: MBConv blocks (Table 1's layers summed over stages 2-8); B7 has 55;
- ``MAX_PARAMS``: parameters; B7 has 66.3M, and 2e9 fp32 parameters are 8 GB;
- ``MAX_ACTIVATIONS``: elements of all layer outputs for one image (``Report.activations``); B7 at 600 px
  has 0.42e9, and 2e9 are 8 GB at fp32 (what a training step keeps for the backward pass).

Raise them for one call (``build(..., max_params=5e9)``, ``with size_limits(params=5e9): ...``) or for a
process with the environment variables ``EFFNET_EDU_MAX_PARAMS``, ``EFFNET_EDU_MAX_ACTIVATIONS`` and
``EFFNET_EDU_MAX_BLOCKS`` (``inf`` turns a bound off).
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NamedTuple

from .scaling import ScalingError

MAX_PARAMS = 2_000_000_000
MAX_ACTIVATIONS = 2_000_000_000
MAX_BLOCKS = 10_000
ENV = {"params": "EFFNET_EDU_MAX_PARAMS", "activations": "EFFNET_EDU_MAX_ACTIVATIONS",
       "blocks": "EFFNET_EDU_MAX_BLOCKS"}
_DEFAULTS = {"params": MAX_PARAMS, "activations": MAX_ACTIVATIONS, "blocks": MAX_BLOCKS}
_override: ContextVar[dict | None] = ContextVar("effnet_edu_size_limits", default=None)


class SizeError(ScalingError):
    """A network larger than the size limits; the message names the size, the limit and how to raise it."""


class Limits(NamedTuple):
    params: float
    activations: float
    blocks: float


def _bound(name: str, value, where: str) -> float:
    try:
        bound = float(value)
    except (TypeError, ValueError):
        raise ScalingError(f"{where} must be a number (or inf), got {value!r}") from None
    if math.isnan(bound) or bound <= 0:
        raise ScalingError(f"{where} must be a positive number (or inf), got {value!r}")
    return bound


def current() -> Limits:
    """The bounds in force: ``size_limits`` overrides, else the environment variables, else the defaults."""
    override = _override.get() or {}
    values = {}
    for name, default in _DEFAULTS.items():
        if name in override:
            values[name] = override[name]
        elif os.environ.get(ENV[name], "").strip():
            values[name] = _bound(name, os.environ[ENV[name]], f"the environment variable {ENV[name]}")
        else:
            values[name] = float(default)
    return Limits(**values)


@contextmanager
def size_limits(params=None, activations=None, blocks=None):
    """Raise (or lower) the bounds inside a ``with`` block; None keeps the bound in force."""
    given = {"params": params, "activations": activations, "blocks": blocks}
    new = {**(_override.get() or {}), **{k: _bound(k, v, f"max_{k}") for k, v in given.items() if v is not None}}
    token = _override.set(new)
    try:
        yield current()
    finally:
        _override.reset(token)


def _num(value) -> str:
    """A count that may be astronomically large (an int with hundreds of digits) as short text."""
    value = int(value)
    if value < 10**9:
        return f"{value:,}"
    exponent = int(math.log10(value))
    digits = value // 10 ** (exponent - 2)  # the three leading digits, exactly
    return f"{digits // 100}.{digits % 100:02d}e{exponent}"


def _how_to_raise(name: str) -> str:
    return f"pass max_{name}=... or set {ENV[name]} to allow it"


def check_blocks(n_blocks: int, name: str) -> None:
    """Refuse an absurd depth from the stage-layer arithmetic alone, before a block is listed or counted."""
    limit = current().blocks
    if n_blocks > limit:
        raise SizeError(f"{name} is too large: {_num(n_blocks)} MBConv blocks, the limit is {_num(limit)} "
                        f"(B7 has 55; {_how_to_raise('blocks')})")


def check_size(config):
    """Refuse ``config`` if its parameters or activations (batch 1) exceed the bounds; returns its ``Report``."""
    from .accounting import count  # accounting imports arch, which imports this module

    report = count(config)  # lists the blocks: check_blocks has already refused an absurd depth there
    limit = current()
    for what, value, bound in (("params", report.params, limit.params),
                               ("activations", report.activations, limit.activations)):
        if value > bound:
            label = "parameters" if what == "params" else "activations per image"
            raise SizeError(f"{config.name} is too large: {_num(value)} {label} ({_num(4 * value // 2**30)} GiB "
                            f"at fp32), the limit is {_num(bound)} ({_how_to_raise(what)})")
    return report
