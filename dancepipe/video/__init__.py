"""Video in and out: probing and decoding, ingest, the training frames and their crop, images, H.264 encoding.

* :mod:`~dancepipe.video.decode` — probing and upright, timestamped decoding (every read goes here);
* :mod:`~dancepipe.video.ingest` — the ingest stage: a user video or pinned demo clip into ``data/videos``;
* :mod:`~dancepipe.video.crop` — the per-subject crop/resize transform shared by frames and labels;
* :mod:`~dancepipe.video.frames` — the frames stage: a subject's video cropped to training images;
* :mod:`~dancepipe.video.images` — reading the pipeline's image files;
* :mod:`~dancepipe.video.encode` — browser-playable MP4 writing, with the source's audio.

Like every subpackage here, this ``__init__`` imports nothing, so a stage's dvc.yaml deps
name only the modules it really runs.
"""
