"""What the user watches and what is measured: renders, side-by-sides, evaluation and the report.

* :mod:`~dancepipe.output.render` — the render stage: the target performing a source's motion;
* :mod:`~dancepipe.output.sidebyside` — the steadied source panel of the side-by-side video;
* :mod:`~dancepipe.output.personless` — what to show for source frames with no person;
* :mod:`~dancepipe.output.metrics` — image, pose and temporal quality measures;
* :mod:`~dancepipe.output.baseline` — the paper's nearest-neighbour baseline;
* :mod:`~dancepipe.output.evaluate` — the evaluate and evaluate_transfer stages;
* :mod:`~dancepipe.output.report` — the HTML report;
* :mod:`~dancepipe.output.strip` — the README's picture: frames of the side-by-sides, tiled.
"""
