"""People in the videos: the pose model, its detections, and the one person each subject follows.

* :mod:`~dancepipe.pose.estimator` — finding and loading the Ultralytics pose weights;
* :mod:`~dancepipe.pose.detect` — the poses stage: every person of every frame, once per video;
* :mod:`~dancepipe.pose.keypoints` — COCO-17 names and the detection/keypoint table schemas;
* :mod:`~dancepipe.pose.tracks` — linking detections into tracks and choosing the main one;
* :mod:`~dancepipe.pose.subject` — the subject stage: one named person's directory;
* :mod:`~dancepipe.pose.smoothing` — temporal clean-up of keypoint tracks;
* :mod:`~dancepipe.pose.skeleton` — the stick-figure rasteriser (keypoints to a label image).
"""
