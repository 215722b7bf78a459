"""mmgan_image: the image modality plugin (DCGAN on 32x32 and 64x64 RGB)."""

__version__ = "0.1.0"
