"""mmgan_speech: the speech modality plugin (a MelGAN vocoder: log-mel in, waveform out).

``plugin`` declares the modality (its config, networks, losses, data, samples, metrics and the
``mmgan vocode`` command); ``mel`` holds the one mel definition every part shares, ``audio`` WAV input
and output, ``networks`` the generator and discriminators, ``datasets`` the sources, ``metrics`` the
vocoder metrics.
"""

__version__ = "0.1.0"
