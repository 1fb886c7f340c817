"""Spectral features in `tf.signal`, shared by input pipelines and exports."""

from asd_keras.features.spectral import LogMelFrontend
from asd_keras.features.spectral import clip_spectrum
from asd_keras.features.spectral import linear_spectrogram
from asd_keras.features.spectral import mel_filterbank
from asd_keras.features.spectral import stack_frames
from asd_keras.features.spectral import stft_magnitude
