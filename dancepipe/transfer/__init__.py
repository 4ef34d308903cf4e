"""From a source's keypoints to labels in the target's space: the motion-transfer transform.

* :mod:`~dancepipe.transfer.normalize` — global pose normalisation (the normfit stage);
* :mod:`~dancepipe.transfer.profile` — the profile stage: the target's bones, facing and head, once;
* :mod:`~dancepipe.transfer.chain` — the transfer chain: the ordered steps from source keypoints to the label's;
* :mod:`~dancepipe.transfer.retarget` — the target's bone lengths on the source figure;
* :mod:`~dancepipe.transfer.facing` — which way a figure faces, and mirroring its sides;
* :mod:`~dancepipe.transfer.legs` — naming crossed legs by their side of the hips;
* :mod:`~dancepipe.transfer.head` — the target's head where the source's is lost or turned;
* :mod:`~dancepipe.transfer.facebox` — face boxes from keypoints (labels record them, the face GAN uses them);
* :mod:`~dancepipe.transfer.labels` — the labels stage: training and transfer label images.
"""
