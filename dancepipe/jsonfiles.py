"""Reading the pipeline's small JSON files (normfit stats, target profiles): one reader, one kind of error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dancepipe.errors import DancepipeError


def read_json_file(path: str | Path, what: str, fmt: str, stage: str, plural: bool = False) -> dict[str, Any]:
    """The JSON object in ``path``, its ``format`` tag checked to be ``fmt``.

    ``what`` names the file for the user ("the target's profile"), ``stage`` the stage
    that writes it; every failure is one :class:`DancepipeError` sentence saying so.
    """
    p = Path(path)
    verb, neg = ("are", "do not") if plural else ("is", "does not")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DancepipeError(f"{p}: {what} {neg} exist (run the {stage} stage first)") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DancepipeError(f"{p}: {what} {verb} not valid JSON") from e
    except OSError as e:
        raise DancepipeError(f"{p}: {what} cannot be read ({e.strerror})") from e
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise DancepipeError(f"{p}: not a {stage} file (expected format '{fmt}'); rerun the {stage} stage")
    return data
