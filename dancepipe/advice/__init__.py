"""What a target's footage can do, said before anything is trained or rendered.

* :mod:`~dancepipe.advice.footage` — the footage stage: the target's footage figures and one sentence of advice;
* :mod:`~dancepipe.advice.coverage` — how much of a dance the target's footage covers, measured where
  the transfer labels are made, with a warning naming the dance and the body parts that will smear.
"""
