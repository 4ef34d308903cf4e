"""The one project exception type.

Every data or runtime failure the user can act on is raised as ``DancepipeError``
with a single sentence that names the file or param and the problem. The CLI layer
(:mod:`dancepipe.cli`) turns it into ``Error: <sentence>`` and exit status 1.
"""


class DancepipeError(Exception):
    """A failure caused by the user's data, files or params, explained in one sentence."""
