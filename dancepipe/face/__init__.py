"""The face GAN: a small residual generator that sharpens the face crop.

The main generator renders the whole body at once and spends little capacity on the
face, so, as in "Everybody Dance Now", a second, small generator looks only at a
fixed-size square around the face. It sees the label crop and the main generator's
crop (6 channels) and predicts a *residual* that is added to the main crop. Its last
convolution starts at zero, so a fresh face generator is exactly the identity and
training can only move away from the main result as far as the losses ask.

The package has the main model's shape, module for module:

* :mod:`dancepipe.face.networks` (like :mod:`dancepipe.networks`): the face generator
  and discriminator, and :class:`~dancepipe.face.networks.FaceRefiner`, which applies a
  trained face generator inside the face boxes of full frames (what render uses);
* :mod:`dancepipe.face.dataset` (like :mod:`dancepipe.dataset`): the training crops,
  cut from the frozen main generator's outputs with the boxes the labels stage
  recorded (:mod:`dancepipe.facebox`), so training and rendering see the same crops;
* :mod:`dancepipe.face.train` (like :mod:`dancepipe.train`): the ``train_face`` config,
  the training loop and the stage entry point;
* :mod:`dancepipe.face.checkpoint` (like :mod:`dancepipe.checkpoint`): ``models/face.pt``
  written and read back; one written with ``train_face.enabled: false`` holds no
  weights and loads as ``None``.

This ``__init__`` imports nothing, so a stage depends only on the face modules it uses
(render never reaches the training code).
"""
