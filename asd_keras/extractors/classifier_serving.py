"""Serving the network of a classifier-embedding extractor: waveforms of any
length to embeddings, both microphones of two-channel clips through the one
network, and the functions that explain a spectrogram-only network (RISE)."""

import keras
import numpy as np

from asd_keras.features.spectral_layers import FixedLength
from asd_keras.layers import LinearSpectrogram


def paired_model(network, num_samples=None, length=None):
    """`(batch, num_samples, 2)` waveforms to `{"embedding": [near |
    far]}`, both channels through the one network; `length` applies
    that `FixedLength` to each channel first.

    Args:
        network: the trained embedding network (waveform -> embedding).
        num_samples: int or None. The input length (None: any).
        length: `FixedLength` layer or None.
    """
    waveform = keras.Input((num_samples, 2), name="waveform")
    parts = []
    for i in (0, 1):  # near, far
        channel = waveform[..., i]
        if length is not None:
            channel = length(channel)
        parts.append(network(channel, training=False))
    embedding = keras.layers.Concatenate(name="channels")(parts)
    return keras.Model(waveform, {"embedding": embedding},
                       name="classifier_embedding_features")


def serving_model(network, clip_samples, length_policy, paired, num_samples=None):
    """Waveforms of any length `(batch, samples)` to `{"embedding"}`; the
    length policy is applied without the random training crop. When
    `paired` the input is `(batch, samples, 2)` (near, far): the length
    policy and the network are applied to each channel, and the embeddings
    concatenated `[near | far]`.

    Args:
        network: the trained embedding network (waveform -> embedding).
        clip_samples: int. The network's input length.
        length_policy: str. How clips reach `clip_samples` (`FixedLength`).
        paired: bool. Two-channel input (`channel="both"`).
        num_samples: int or None. The serving input length (None: any).
    """
    length = FixedLength(clip_samples, length_policy)
    if paired:
        return paired_model(network, num_samples, length)
    waveform = keras.Input((num_samples,), name="waveform")
    embedding = network(length(waveform), training=False)
    return keras.Model(waveform, {"embedding": embedding},
                       name="classifier_embedding_features")


def spectrogram_functions(network, config, make_loader):
    """Functions for explaining a spectrogram-only network (RISE, Fig. 4).

    Needs `branches="spectrogram"`, so the embedding depends on the
    spectrogram alone.

    Args:
        network: the trained embedding network.
        config: the extractor's configuration (`channel`, `branches`,
            `score_batch_clips`).
        make_loader: callable returning the extractor's `AudioLoader`.

    Returns:
        (spectrogram_fn, embed_fn): `spectrogram_fn(path)` gives the
        linear-magnitude spectrogram `(frames, 513)` of a clip after the
        length policy; `embed_fn(spectrograms)` embeds a batch `(batch,
        frames, 513)`, so `backend.score(embed_fn(s))` scores it.

    Raises:
        ValueError: the extractor has `channel="both"`, or its network is
            not spectrogram-only.
    """
    if config["channel"] == "both":
        raise ValueError(
            "Explaining spectrograms needs single-channel embeddings; this extractor "
            "has channel='both' ([near | far] features, which one channel's "
            "spectrogram cannot give). Train with channel=0 or channel=1.")
    if config["branches"] != "spectrogram":
        raise ValueError(
            "Explaining spectrograms needs a spectrogram-only model; train with "
            f"branches=spectrogram (this one has branches={config['branches']!r}).")
    encoder = network.get_layer("spectrogram_encoder")
    stft = LinearSpectrogram(1024, 512)
    loader = make_loader()

    def spectrogram_fn(path):
        loader.check([str(path)], progress=False)
        return keras.ops.convert_to_numpy(stft(loader.load(str(path))[None]))[0]

    def embed_fn(spectrograms):
        return encoder.predict(np.asarray(spectrograms, np.float32), verbose=0,
                               batch_size=int(config["score_batch_clips"]))

    return spectrogram_fn, embed_fn
