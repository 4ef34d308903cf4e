"""From a source's keypoints to labels in the target's space: the motion-transfer transform.

* :mod:`~dancepipe.transfer.normalize` — global pose normalisation (the normfit stage);
* :mod:`~dancepipe.transfer.retarget` — the target's bone lengths on the source figure;
* :mod:`~dancepipe.transfer.facing` — which way a figure faces, and mirroring its sides;
* :mod:`~dancepipe.transfer.head` — the target's head where the source's is lost or turned;
* :mod:`~dancepipe.transfer.facebox` — face boxes from keypoints (labels record them, the face GAN uses them);
* :mod:`~dancepipe.transfer.labels` — the labels stage: training and transfer label images.
"""
