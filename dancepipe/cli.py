"""Helpers shared by the Click commands in ``stages/``.

The stage commands stay thin: they use :func:`stage_command` so any
:class:`DancepipeError` becomes a one-sentence ``click.ClickException`` (exit 1), and
:func:`progress` for a tqdm bar driven by the library's progress callbacks.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from tqdm import tqdm

from dancepipe.errors import DancepipeError

PARAMS_OPTION = click.option(
    "--params",
    "params_path",
    default="params.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="params file to read this stage's section from.",
)


def check_catalog(params_path: str | os.PathLike[str]) -> None:
    """Validate the params file's catalog (videos, subjects, targets, sources) when it has one.

    Every stage runs this before its own work, so a broken catalog (a target naming a
    missing subject, say) stops whichever stage DVC runs first with the one sentence
    that names the key, instead of a missing-file error further down the matrix.
    Files without catalog keys (a stage run by hand with only its section) pass.
    """
    from dancepipe.catalog import KEYS, catalog_from
    from dancepipe.config import load_params

    if not os.path.isfile(params_path):
        return
    params = load_params(params_path)
    if any(k in params for k in KEYS):
        catalog_from(params, str(params_path))


def stage_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a stage body: configure logging, check the catalog, turn project errors into CLI errors."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logging.basicConfig(
            level=os.environ.get("DANCEPIPE_LOGLEVEL", "INFO"),
            format="%(levelname)s %(name)s: %(message)s",
        )
        try:
            if "params_path" in kwargs:
                check_catalog(kwargs["params_path"])
            return fn(*args, **kwargs)
        except DancepipeError as e:
            raise click.ClickException(str(e)) from e

    return wrapper


def figure(value: float | None, spec: str = ".3f") -> str:
    """A metric for a stage's summary line: formatted with ``spec``, or ``n/a`` when it is null."""
    return "n/a" if value is None else format(value, spec)


@contextmanager
def progress(total: int | None, desc: str, unit: str = "frame") -> Iterator[Callable[[int], None]]:
    """Yield an ``advance(n)`` callback backed by a tqdm bar (shows rate and ETA)."""
    bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=None)
    try:
        yield bar.update
    finally:
        bar.close()
