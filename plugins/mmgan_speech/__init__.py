"""mmgan_speech: the speech modality plugin (a MelGAN vocoder: log-mel in, waveform out).

This first increment holds the one mel definition (``mel``) and WAV input/output (``audio``); networks,
data, losses and ``mmgan vocode`` build on them.
"""

__version__ = "0.1.0"
