"""Where and how torch runs: the device a stage uses, its precision, and distributed training.

* :mod:`~dancepipe.hardware.devices` — the one meaning of every ``device`` param, and what the machine has;
* :mod:`~dancepipe.hardware.precision` — bf16 or fp16 autocast where the hardware has it;
* :mod:`~dancepipe.hardware.distributed` — process groups, ranks and DDP wrapping.
"""
