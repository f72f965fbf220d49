"""The networks: the Progressive GAN and StyleGAN2 generators, the segmenters and their building
blocks, and the FID Inception-v3.

Nothing here imports the rest of gdjax: models return their named activations as data and the
other subpackages build on them.
"""
