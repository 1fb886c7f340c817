"""EAT as a keras-hub `Backbone`, from waveform to every layer.

EAT (Chen et al., IJCAI 2024), the data2vec 2 style audio encoder (reference
methods.md §C1, `models/images.py`, `models/modules.py`): patch convolution
16 x 16 with bias, fixed 2-D sin-cos positions, the CLS token, LayerNorm
(`context_encoder.norm`), then post-LN `AltBlock`s (eps 1e-6). Base: 12 x
768, large: 24 x 1024. The front end pads or crops to 1024 frames (10 s).

Only inference is reproduced exactly: dropout, layer drop and masking are
not part of the model. The layer names are the weights' names in every
preset and checkpoint mapping (`converters.eat_entries`) and in the
fine-tuning network (`encoder_finetuning`, which reuses `eat_body`): keep
them.
"""

import keras

from asd_keras.features.kaldi import KaldiFbank
from asd_keras.models.audio_backbone import AudioEncoder
from asd_keras.models.audio_tokens import check_grid
from asd_keras.models.audio_tokens import eat_body


@keras.saving.register_keras_serializable(package="asd_keras")
class EATBackbone(AudioEncoder):
    """EAT encoder network (a `keras_hub.models.Backbone`).

    Args:
        num_layers: int. 12 (base) or 24 (large).
        dim: int. 768 (base) or 1024 (large).
        num_heads: int. 12 (base) or 16 (large).
        mlp_ratio: float. Defaults to `4.0`.
        patch_size: int. Defaults to `16`.
        max_length: int. Time patches of the fixed position table (the
            original's `max_length`, 768).
        num_frames: int. Frames the front end pads or crops to (1024 for
            10 s; a multiple of `patch_size`).
        num_classes: int. Fine-tuned head size (527); 0 when pre-trained.
        num_mel_bins: int. Defaults to `128`.
        norm_mean: float. Filter-bank normalisation mean (AudioSet).
        norm_std: float. Filter-bank normalisation standard deviation (AudioSet).
        layer_norm_epsilon: float. Defaults to `1e-6`.
        dtype: str or `keras.DTypePolicy` or None. Of every layer; None: the
            global policy.

    Example:
    ```python
    backbone = EATBackbone(num_layers=2, dim=64, num_heads=4, num_frames=96)
    outputs = backbone(np.zeros((1, 16000), "float32"))  # "fbank", "layer_0".."layer_2"
    backbone.save_to_preset("eat_tiny")
    restored = EATBackbone.from_preset("eat_tiny", num_frames=64)
    ```
    """

    encoder_type = "eat"
    num_extra_tokens = 1
    hyperparameters = ("num_layers", "dim", "num_heads", "mlp_ratio", "patch_size",
                       "max_length", "num_frames", "num_classes", "num_mel_bins", "norm_mean",
                       "norm_std", "layer_norm_epsilon")

    def __init__(self, num_layers=12, dim=768, num_heads=12, mlp_ratio=4.0, patch_size=16,
                 max_length=768, num_frames=1024, num_classes=0, num_mel_bins=128,
                 norm_mean=-4.268, norm_std=4.569, layer_norm_epsilon=1e-6, dtype=None,
                 name="eat", **kwargs):
        check_grid(num_mel_bins, patch_size)
        if num_frames % patch_size or num_frames // patch_size > max_length:
            raise ValueError(
                f"num_frames must be a multiple of patch_size ({patch_size}) with at most "
                f"max_length ({max_length}) time patches; received {num_frames!r}.")

        # === Functional Model ===
        waveform = keras.Input((None,), name="waveform")
        frontend = KaldiFbank(window_type="hanning", num_mel_bins=num_mel_bins,
                              subtract_waveform_mean=True, num_frames=num_frames,
                              norm_mean=norm_mean, norm_std=norm_std, dtype=dtype, name="fbank")
        fbank = frontend(waveform)
        outputs = {"fbank": fbank, **eat_body(fbank, num_layers, dim, num_heads, mlp_ratio,
                                              patch_size, max_length, layer_norm_epsilon,
                                              dtype=dtype)}
        if num_classes:
            cls = outputs[f"layer_{num_layers}"][:, 0]
            cls = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype,
                                                  name="fc_norm")(cls)
            outputs["logits"] = keras.layers.Dense(num_classes, dtype=dtype, name="head")(cls)
        super().__init__(inputs=waveform, outputs=outputs, dtype=dtype, name=name, **kwargs)

        # === Config ===
        self.num_layers = num_layers
        self.dim = dim
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.patch_size = patch_size
        self.max_length = max_length
        self.num_frames = num_frames
        self.num_classes = num_classes
        self.num_mel_bins = num_mel_bins
        self.norm_mean = norm_mean
        self.norm_std = norm_std
        self.layer_norm_epsilon = layer_norm_epsilon
        self.frontend = frontend
