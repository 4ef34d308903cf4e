"""The generators: the body model (pix2pixHD with temporal smoothing) and the face GAN.

* :mod:`~dancepipe.model.networks`, :mod:`~dancepipe.model.losses`, :mod:`~dancepipe.model.features`
  — generators, discriminators, losses and the frozen perceptual feature networks;
* :mod:`~dancepipe.model.dataset` — frames and labels split in time, served as pairs;
* :mod:`~dancepipe.model.split` — the time split rule alone (torch-free: the transfer labels use it);
* :mod:`~dancepipe.model.train` — the train stage's config and loop;
* :mod:`~dancepipe.model.checkpoint` — generator files and resumable checkpoints.

The face GAN (the ``face_*`` modules): a small residual generator that sharpens the face crop.

The main generator renders the whole body at once and spends little capacity on the
face, so, as in "Everybody Dance Now", a second, small generator looks only at a
fixed-size square around the face. It sees the label crop and the main generator's
crop (6 channels) and predicts a *residual* that is added to the main crop. Its last
convolution starts at zero, so a fresh face generator is exactly the identity and
training can only move away from the main result as far as the losses ask.

Its modules mirror the main model's, one for one:

* :mod:`~dancepipe.model.face_networks`: the face generator and discriminator, and
  :class:`~dancepipe.model.face_networks.FaceRefiner`, which applies a trained face
  generator inside the face boxes of full frames (what render uses);
* :mod:`~dancepipe.model.face_dataset`: the training crops, cut from the frozen main
  generator's outputs with the boxes the labels stage recorded
  (:mod:`dancepipe.transfer.facebox`), so training and rendering see the same crops;
* :mod:`~dancepipe.model.face_train`: the ``train_face`` config, loop and stage entry point;
* :mod:`~dancepipe.model.face_checkpoint`: ``models/face.pt`` written and read back; one
  written with ``train_face.enabled: false`` holds no weights and loads as ``None``.

This ``__init__`` imports nothing, so a stage depends only on the modules it uses
(render never reaches the training code).
"""
