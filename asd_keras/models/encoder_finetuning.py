"""EAT as a trainable embedding network for anomalous sound detection.

The network of "An Enhanced Audio Feature Tailored for Anomalous Sound
Detection Based on Pre-trained Models" (Zhong et al., DCASE 2024 / ICANN
2025; reference methods.md §G), from the raw waveform to an embedding:

    waveform -> filter banks (mel, linear or gammatone; `KaldiFbank`)
             -> SpecAugment (training only) -> SimAM (none, global, local)
             -> EAT (patch embedding ... blocks; `eat_body`)
             -> pooling of the last block's tokens (attentive statistics,
                CLS or mean) -> Dense embedding

SimAM sits on the filter banks before the patch embedding (the paper
summary's component map; an assumption, methods.md §G). The EAT layers keep
the names of `EATBackbone`'s, so a converted preset's weights are copied in
by name (`transfer_weights`); the front end has no weights, so any filter
bank fits any preset.
"""

import keras
from keras import layers

from asd_keras.layers.attentive_pooling import AttentiveStatisticsPooling
from asd_keras.layers.augment import FrequencyMasking
from asd_keras.layers.augment import TimeMasking
from asd_keras.features.kaldi import KaldiFbank
from asd_keras.layers.simam import SimAM
from asd_keras.models.audio_encoders import encoder_defaults
from asd_keras.models.audio_tokens import eat_body
from asd_keras.models.precision import float32_output

POOLINGS = ("asp", "cls", "mean")
SIMAM_MODES = ("none", "global", "local")


def eat_embedding_model(num_samples, encoder_config, filter_bank="mel", norm_mean=-4.268,
                        norm_std=4.569, low_freq=20.0, high_freq=0.0, simam="none",
                        simam_tile=32, time_masks=1, time_mask_width=0, freq_masks=1,
                        freq_mask_width=0, pooling="asp", attention_dim=128,
                        embedding_dim=256, seed=0, name="eat_embedding"):
    """The fine-tuning network, waveform `(batch, num_samples)` to embedding.

    Args:
        num_samples: int. Fixed clip length in samples (16 kHz).
        encoder_config: dict. `EATBackbone` arguments (`num_layers`, `dim`,
            `num_heads`, `mlp_ratio`, `patch_size`, `max_length`,
            `num_frames`, `num_mel_bins`, `layer_norm_epsilon`); missing
            keys take EAT-base's values, except `num_frames`: missing or
            None, the clip's frames rounded up to a multiple of
            `patch_size`.
        filter_bank: str. `"mel"` (o-FB, EAT's pre-training), `"linear"`
            (m-FB, evenly spaced in Hz) or `"gammatone"` (g-FB).
        norm_mean: float. `(fbank - mean) / (2 std)`, EAT's
            normalisation; AudioSet's constants fit the mel bank only.
        norm_std: see `norm_mean`.
        low_freq: float. Filter-bank edges in Hz (`high_freq <=
            0`: offset from Nyquist).
        high_freq: see `low_freq`.
        simam: str. `"none"`, `"global"` or `"local"`.
        simam_tile: int. Tile side of local SimAM (32).
        time_masks: int.
            SpecAugment on the filter banks (training only; width 0: off).
        time_mask_width: see `time_masks`.
        freq_masks: see `time_masks`.
        freq_mask_width: see `time_masks`.
        pooling: str. `"asp"` (attentive statistics over the patch tokens),
            `"cls"` (the CLS token) or `"mean"` (mean of the patch tokens).
        attention_dim: int. Hidden size of attentive statistics pooling.
        embedding_dim: int. The embedding's size (a linear projection).
        seed: int. Seeds the SpecAugment layers.
        name: str.

    Returns:
        keras.Model waveform -> embedding `(batch, embedding_dim)`. Its
        layers `"fbank"` and (with SimAM) `"simam"` give the maps before and
        after the enhancement.
    """
    for key, value, allowed in (("simam", simam, SIMAM_MODES),
                                ("pooling", pooling, POOLINGS)):
        if value not in allowed:
            raise ValueError(f"{key} must be one of {allowed}; received {value!r}.")
    config = {**encoder_defaults("eat"), "num_frames": None, **encoder_config}
    unknown = sorted(set(config) - set(encoder_defaults("eat")))
    if unknown:
        raise ValueError(f"Unknown EAT configuration key(s) {unknown}; known: "
                         f"{sorted(encoder_defaults('eat'))}.")
    if config.get("num_classes"):
        config["num_classes"] = 0  # the AudioSet head plays no part here
    patch = int(config["patch_size"])
    waveform = keras.Input((num_samples,), name="waveform")
    frontend = KaldiFbank(window_type="hanning", num_mel_bins=int(config["num_mel_bins"]),
                          subtract_waveform_mean=True, num_frames=None,
                          norm_mean=norm_mean, norm_std=norm_std, low_freq=low_freq,
                          high_freq=high_freq, filter_bank=filter_bank, name="fbank")
    num_frames = config["num_frames"]
    if num_frames is None:
        num_frames = -(-frontend.frames_for(num_samples) // patch) * patch
    if num_frames % patch or num_frames // patch > int(config["max_length"]):
        raise ValueError(f"num_frames must be a multiple of patch_size ({patch}) with at most "
                         f"max_length ({config['max_length']}) time patches; received "
                         f"{num_frames!r}.")
    frontend.num_frames = int(num_frames)
    x = frontend(waveform)
    if time_mask_width and time_masks:
        x = TimeMasking(time_mask_width, time_masks, seed=seed, name="time_masking")(x)
    if freq_mask_width and freq_masks:
        x = FrequencyMasking(freq_mask_width, freq_masks, seed=None if seed is None
                             else seed + 1, name="frequency_masking")(x)
    if simam != "none":
        x = SimAM(simam, simam_tile, name="simam")(x)
    tokens = eat_body(x, int(config["num_layers"]), int(config["dim"]),
                      int(config["num_heads"]), float(config["mlp_ratio"]), patch,
                      int(config["max_length"]), float(config["layer_norm_epsilon"]))
    tokens = tokens[f"layer_{config['num_layers']}"]
    if pooling == "cls":
        pooled = layers.LayerNormalization(epsilon=float(config["layer_norm_epsilon"]),
                                           name="fc_norm")(tokens[:, 0])
    elif pooling == "mean":
        pooled = layers.GlobalAveragePooling1D(name="token_mean")(tokens[:, 1:])
    else:
        pooled = AttentiveStatisticsPooling(attention_dim, name="attentive_pooling")(
            tokens[:, 1:])
    embedding = layers.Dense(embedding_dim, name="embedding")(pooled)
    # Under a mixed dtype policy the head and the embedding need float32.
    return keras.Model(waveform, float32_output(embedding, "embedding_float32"), name=name)


def block_index(layer_name):
    """The transformer block of an EAT layer name (`blocks_3_attn` -> 3),
    -1 for the patch embedding, positions, CLS and first norm, None for the
    rest (pooling, embedding, front end)."""
    if layer_name.startswith("blocks_"):
        return int(layer_name.split("_")[1])
    if layer_name in ("local_encoder", "fixed_positional_encoder", "extra_tokens",
                      "context_encoder_norm"):
        return -1
    return None
