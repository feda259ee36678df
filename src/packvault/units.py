"""The one grammar for sizes and durations, for every command, option, job setting and benchmark.

It lives at the top of the package, above no layer, so storage, maintenance, the CLI and the serverless
job all parse ``--min-age 2m`` and ``--keep-within 2m`` the same way (two months, both times): a user
should never have to remember which option counts minutes and which months.

Durations: one or more ``<whole number><unit>`` terms, e.g. ``90s``, ``30min``, ``36h``, ``2d``, ``1w``,
``6m``, ``1y``, ``1d12h``.  Units: ``s`` seconds, ``min`` minutes, ``h`` hours, ``d`` days, ``w`` weeks,
``m`` months, ``y`` years; case does not matter, except that a capital ``M`` is refused because it reads as
minutes to some people and months to others.  Months and years are not fixed lengths: they count as the
longest a calendar month (31 days) or year (366 days) can be, so ``--keep-within 1m`` never keeps less
than a calendar month and ``--min-age 1m`` never touches anything younger than one.  A bare number has no
unit and is refused, except ``0`` where zero is allowed (zero is zero in every unit).

Sizes: a number (decimals allowed) with an optional unit ``B``, ``K``/``KB``/``KiB``, ``M``/``MB``/``MiB``,
``G``/``GB``/``GiB``, ``T``/``TB``/``TiB``, case-insensitive.  Every multiple is binary (``1G`` = 2**30):
pack sizes and benchmark data sets are meant as powers of two nearly always, and one reading for every
spelling avoids a 7 % surprise between ``1G`` and ``1GB``.
"""

from __future__ import annotations

import re
from datetime import timedelta

from .errors import UsageError

__all__ = ["DURATION_HELP", "SIZE_HELP", "parse_duration", "parse_size"]

DURATION_HELP = "a number and a unit s, min, h, d, w, m (months) or y, e.g. 90s, 30min, 2h, 7d, 2m, 1d12h"
SIZE_HELP = "a number and an optional binary unit K, M, G or T, e.g. 512K, 32M, 1.5G, 1048576"

_DURATION_UNITS: dict[str, timedelta] = {
    "s": timedelta(seconds=1),
    "min": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    "m": timedelta(days=31),
    "y": timedelta(days=366),
}
_TERM = r"([0-9]+)([A-Za-z]+)"
_DURATION_RE = re.compile(rf"(?:{_TERM})+")
_TERM_RE = re.compile(_TERM)

_SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)")
_SIZE_UNITS: dict[str, int] = {"": 1, "b": 1}
for _power, _letter in enumerate("kmgt", start=1):
    for _spelling in (_letter, f"{_letter}b", f"{_letter}ib"):
        _SIZE_UNITS[_spelling] = 1 << (10 * _power)


def parse_duration(text: str, *, what: str = "duration", allow_zero: bool = False) -> timedelta:
    """``text`` in the duration grammar (module docstring) as a ``timedelta``.

    ``what`` names the option in the error message (``--min-age``); ``allow_zero`` accepts ``0`` and
    zero-length sums (a safety margin may be switched off, a retention window may not).  Bad input raises
    ``UsageError`` with one line saying what is wrong and how to write it.
    """
    stripped = str(text).strip()
    if allow_zero and stripped == "0":
        return timedelta(0)
    if not _DURATION_RE.fullmatch(stripped):
        if stripped.isdigit():
            raise UsageError(f"invalid {what} {text!r}: a unit is missing", hint=f"write {DURATION_HELP}")
        raise UsageError(f"invalid {what} {text!r}", hint=f"write {DURATION_HELP}")
    total = timedelta(0)
    for number, unit in _TERM_RE.findall(stripped):
        if unit == "M":
            raise UsageError(
                f"invalid {what} {text!r}: 'M' is ambiguous",
                hint=f"'m' is months, 'min' minutes; write {DURATION_HELP}",
            )
        step = _DURATION_UNITS.get(unit.lower())
        if step is None:
            raise UsageError(f"invalid {what} {text!r}: unknown unit {unit!r}", hint=f"write {DURATION_HELP}")
        try:
            total += int(number) * step
        except OverflowError:
            raise UsageError(f"invalid {what} {text!r}: too long", hint=f"write {DURATION_HELP}") from None
    if total <= timedelta(0) and not allow_zero:
        raise UsageError(f"invalid {what} {text!r}: must be longer than zero", hint=f"write {DURATION_HELP}")
    return total


def parse_size(text: str, *, what: str = "size") -> int:
    """``text`` in the size grammar (module docstring) as a whole number of bytes (fractions round down)."""
    match = _SIZE_RE.fullmatch(str(text).strip())
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise UsageError(f"invalid {what} {text!r}", hint=f"write {SIZE_HELP}")
    whole, _, fraction = match.group(1).partition(".")
    factor = _SIZE_UNITS[unit]
    # integer arithmetic: a float would round sizes above 2**53 bytes
    return int(whole) * factor + (int(fraction) * factor // 10 ** len(fraction) if fraction else 0)
