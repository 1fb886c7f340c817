"""The spectral front ends in one place: `tf.signal` features for input
pipelines (`spectral`), their Keras layers (`spectral_layers`: the
Wilkinghoff spectrogram and spectrum; `statistics`: log-mel spectrogram,
vectors and statistics; `kaldi`: Kaldi filter banks of BEATs/EAT), the
filter banks (`filterbanks`) and the float32 base layer (`precision`)."""

from asd_keras.features.spectral import LogMelFrontend
from asd_keras.features.spectral import clip_spectrum
from asd_keras.features.spectral import linear_spectrogram
from asd_keras.features.spectral import mel_filterbank
from asd_keras.features.spectral import stack_frames
from asd_keras.features.spectral import stft_magnitude
