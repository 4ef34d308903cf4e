"""dancepipe: "Everybody Dance Now" motion transfer as a reproducible DVC pipeline.

The package holds all real logic; the Click commands under ``stages/`` only read
params, call one entry point here and report.
"""

from dancepipe.errors import DancepipeError

__all__ = ["DancepipeError", "__version__"]
__version__ = "0.1.0"
