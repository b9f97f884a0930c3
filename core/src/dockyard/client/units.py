"""Human-readable sizes, as docker prints them (``github.com/docker/go-units``).

Two families, because docker itself uses both:

* :func:`human_size` is ``units.HumanSizeWithPrecision``: decimal units (``kB`` = 1000 bytes),
  ``precision`` significant digits. ``units.HumanSize`` is precision 4 — ``docker build``'s
  "Sending build context", the pull/push progress bars, "Total reclaimed space" of the prune
  commands, ``docker system df``. The listings (``docker images``, ``docker history``,
  ``docker ps -s``, ``docker compose images``) pass precision 3.
* :func:`bytes_size` is ``units.BytesSize``: binary units (``KiB`` = 1024 bytes), 4 significant
  digits — memory: ``docker stats`` MEM USAGE / LIMIT, ``docker info`` Total Memory.

Python's ``%g`` and Go's ``%g`` agree here (shortest form, trailing zeros dropped, an exponent
once the digits run out: ``1e+04YB``), so the strings are byte-identical to docker's.
"""

from __future__ import annotations

DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _scale(size: float, base: float, units: tuple[str, ...]) -> tuple[float, str]:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return size, units[i]


def human_size(size: float, precision: int = 4) -> str:
    """``units.HumanSizeWithPrecision(size, precision)``: ``2.164MB``, ``32.77kB``, ``12B``
    (precision 3: ``2.16MB``)."""
    value, unit = _scale(float(size), 1000.0, DECIMAL_UNITS)
    return f"{value:.{precision}g}{unit}"


def bytes_size(size: float) -> str:
    """``units.BytesSize(size)``: ``1KiB``, ``3.42GiB``, ``7.667GiB``."""
    value, unit = _scale(float(size), 1024.0, BINARY_UNITS)
    return f"{value:.4g}{unit}"
