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


def stage_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a stage body: configure logging and turn project errors into CLI errors."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logging.basicConfig(
            level=os.environ.get("DANCEPIPE_LOGLEVEL", "INFO"),
            format="%(levelname)s %(name)s: %(message)s",
        )
        try:
            return fn(*args, **kwargs)
        except DancepipeError as e:
            raise click.ClickException(str(e)) from e

    return wrapper


@contextmanager
def progress(total: int | None, desc: str, unit: str = "frame") -> Iterator[Callable[[int], None]]:
    """Yield an ``advance(n)`` callback backed by a tqdm bar (shows rate and ETA)."""
    bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=None)
    try:
        yield bar.update
    finally:
        bar.close()
