"""The built-in world: procedural ``scenes`` with exact labels, the ``demo`` models trained on
them (shipped in ``assets/``), their training (``train_gan``, ``train_segmenter``) and
``quality`` measures."""
