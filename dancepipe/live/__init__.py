"""The live mirror: a trained target driven in real time from a webcam, in the browser.

``dancepipe live --target <t>`` (:mod:`~dancepipe.live.command`) serves a local page that
streams camera frames over a WebSocket; the server runs the pipeline's own method on
each frame, causally, and sends back camera | stick figure | generated target.

* :mod:`~dancepipe.live.config` — the live settings (one typed config) and the target's files;
* :mod:`~dancepipe.live.filters` — the One Euro filter and the gap hold (causal smoothing);
* :mod:`~dancepipe.live.slot` — the newest-frame-only hand-over between threads (drops counted);
* :mod:`~dancepipe.live.follow` — the subject rule, online: one person, a bystander never takes over;
* :mod:`~dancepipe.live.calibrate` — normalisation calibrated live against the target's statistics;
* :mod:`~dancepipe.live.pipeline` — one frame through pose, label, generator and face;
* :mod:`~dancepipe.live.record` — ``--record``: what was shown, to an H.264 MP4 in real time;
* :mod:`~dancepipe.live.server` — the web server, the WebSocket protocol and the worker threads;
* :mod:`~dancepipe.live.command` — the ``dancepipe live`` command.

Nothing here is a pipeline stage: no stage imports it, so editing it reruns nothing.
"""
