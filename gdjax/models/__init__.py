"""The networks: the Progressive GAN generator, the segmenters and their building blocks.

Nothing here imports the rest of gdjax: models return their named activations as data and the
other subpackages build on them.
"""
