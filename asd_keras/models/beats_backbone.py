"""BEATs as a keras-hub `Backbone`, from waveform to every layer.

BEATs (Chen et al., ICML 2023) in its released iter3 configuration (reference
methods.md §C2): patch convolution 16 x 16 to 512 (no bias), LayerNorm,
512 -> 768 projection, convolutional position embedding added, post-LN
LayerNorm, then 12 deep-norm post-LN layers (residual scale
`(2 * 12) ** 0.25`) with gated relative position bias shared by all layers.

Only inference is reproduced exactly: dropout, layer drop, masking and the
weight norm (folded into the position kernel) are not part of the model.
The layer names are the weights' names in every preset and checkpoint
mapping (`converters.beats_entries`): keep them.
"""

import math

import keras

from asd_keras.features.kaldi import KaldiFbank
from asd_keras.layers.audio_transformers import ConvPositionEmbedding
from asd_keras.layers.audio_transformers import GatedRelativeAttention
from asd_keras.layers.audio_transformers import RelativePositionBias
from asd_keras.models.audio_backbone import AudioEncoder
from asd_keras.models.audio_tokens import check_grid
from asd_keras.models.audio_tokens import patch_tokens


@keras.saving.register_keras_serializable(package="asd_keras")
class BEATsBackbone(AudioEncoder):
    """BEATs encoder network (a `keras_hub.models.Backbone`).

    Args:
        num_layers: int. Defaults to `12`.
        dim: int. Token width, `encoder_embed_dim`. Defaults to `768`.
        num_heads: int. Defaults to `12`.
        ffn_dim: int. Defaults to `3072`.
        patch_dim: int. Patch-embedding width, `embed_dim`. Defaults to `512`.
        patch_size: int. Defaults to `16`.
        conv_bias: bool. Bias of the patch convolution. Defaults to False.
        conv_pos: int. Kernel of the position convolution. Defaults to `128`.
        conv_pos_groups: int. Defaults to `16`.
        num_buckets: int. Relative position buckets. Defaults to `320`.
        max_distance: int. Defaults to `800`.
        gated: bool. Gated relative position bias (`gru_rel_pos`).
        deep_norm: bool. Residual scale `(2 num_layers) ** 0.25`.
        num_classes: int. Size of the fine-tuned predictor (527 for
            AudioSet); 0 for a pre-trained model.
        num_mel_bins: int. Defaults to `128`.
        norm_mean: float. Filter-bank normalisation mean (AudioSet).
        norm_std: float. Filter-bank normalisation standard deviation (AudioSet).
        layer_norm_epsilon: float. Defaults to `1e-5` (PyTorch's).
        num_frames: int or None. Pad or crop the filter banks to this many
            frames, as EAT does; None (the original) keeps every frame.
        dtype: str or `keras.DTypePolicy` or None. Of every layer; None: the
            global policy.

    Example:
    ```python
    backbone = BEATsBackbone(num_layers=2, dim=64, num_heads=4, ffn_dim=128)
    outputs = backbone(np.zeros((1, 16000), "float32"))  # "fbank", "layer_0".."layer_2"
    backbone.save_to_preset("beats_tiny")
    restored = keras_hub.models.Backbone.from_preset("beats_tiny")
    ```
    """

    encoder_type = "beats"
    hyperparameters = ("num_layers", "dim", "num_heads", "ffn_dim", "patch_dim", "patch_size",
                       "conv_bias", "conv_pos", "conv_pos_groups", "num_buckets",
                       "max_distance", "gated", "deep_norm", "num_classes", "num_mel_bins",
                       "norm_mean", "norm_std", "layer_norm_epsilon", "num_frames")

    def __init__(self, num_layers=12, dim=768, num_heads=12, ffn_dim=3072, patch_dim=512,
                 patch_size=16, conv_bias=False, conv_pos=128, conv_pos_groups=16,
                 num_buckets=320, max_distance=800, gated=True, deep_norm=True,
                 num_classes=0, num_mel_bins=128, norm_mean=15.41663, norm_std=6.55582,
                 layer_norm_epsilon=1e-5, num_frames=None, dtype=None, name="beats",
                 **kwargs):
        check_grid(num_mel_bins, patch_size)
        layers = keras.layers

        # === Functional Model ===
        waveform = keras.Input((None,), name="waveform")
        frontend = KaldiFbank(window_type="povey", num_mel_bins=num_mel_bins,
                              waveform_scale=32768.0, num_frames=num_frames,
                              norm_mean=norm_mean, norm_std=norm_std, dtype=dtype, name="fbank")
        fbank = frontend(waveform)
        x = patch_tokens(fbank, patch_size, patch_dim, conv_bias, "patch_embedding", dtype)
        x = layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype,
                                      name="layer_norm")(x)
        if patch_dim != dim:
            x = layers.Dense(dim, dtype=dtype, name="post_extract_proj")(x)
        position = ConvPositionEmbedding(dim, conv_pos, conv_pos_groups, dtype=dtype,
                                         name="pos_conv")(x)
        x = layers.Add(dtype=dtype, name="pos_add")([x, position])
        x = layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype,
                                      name="encoder_layer_norm")(x)
        outputs = {"fbank": fbank, "layer_0": x}
        bias = RelativePositionBias(num_heads, num_buckets, max_distance, dtype=dtype,
                                    name="relative_position_bias")(x)
        alpha = math.pow(2 * num_layers, 0.25) if deep_norm else 1.0
        for i in range(num_layers):
            prefix = f"layers_{i}"
            attended = GatedRelativeAttention(dim, num_heads, gated=gated, dtype=dtype,
                                              name=f"{prefix}_self_attn")([x, bias])
            x = layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype,
                                          name=f"{prefix}_self_attn_layer_norm")(
                _residual(x, attended, alpha, f"{prefix}_attn_residual", dtype))
            hidden = layers.Dense(ffn_dim, activation="gelu", dtype=dtype,
                                  name=f"{prefix}_fc1")(x)
            hidden = layers.Dense(dim, dtype=dtype, name=f"{prefix}_fc2")(hidden)
            x = layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype,
                                          name=f"{prefix}_final_layer_norm")(
                _residual(x, hidden, alpha, f"{prefix}_ffn_residual", dtype))
            outputs[f"layer_{i + 1}"] = x
        if num_classes:
            # The original's fine-tuned forward pass: per-token predictor,
            # averaged over tokens, then a sigmoid.
            logits = layers.Dense(num_classes, dtype=dtype, name="predictor")(x)
            pooled = layers.GlobalAveragePooling1D(dtype=dtype, name="predictor_mean")(logits)
            outputs["probabilities"] = layers.Activation("sigmoid", dtype=dtype,
                                                         name="probabilities")(pooled)
        super().__init__(inputs=waveform, outputs=outputs, dtype=dtype, name=name, **kwargs)

        # === Config ===
        self.num_layers = num_layers
        self.dim = dim
        self.num_heads = num_heads
        self.ffn_dim = ffn_dim
        self.patch_dim = patch_dim
        self.patch_size = patch_size
        self.conv_bias = conv_bias
        self.conv_pos = conv_pos
        self.conv_pos_groups = conv_pos_groups
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.gated = gated
        self.deep_norm = deep_norm
        self.num_classes = num_classes
        self.num_mel_bins = num_mel_bins
        self.norm_mean = norm_mean
        self.norm_std = norm_std
        self.layer_norm_epsilon = layer_norm_epsilon
        self.num_frames = num_frames
        self.frontend = frontend


def _residual(x, branch, alpha, name, dtype):
    if alpha == 1.0:
        return keras.layers.Add(dtype=dtype, name=name)([x, branch])
    scaled = keras.layers.Rescaling(alpha, dtype=dtype, name=f"{name}_scale")(x)
    return keras.layers.Add(dtype=dtype, name=name)([scaled, branch])
