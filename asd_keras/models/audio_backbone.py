"""The keras-hub `Backbone` base of the pretrained audio encoders.

`BEATsBackbone` and `EATBackbone` are `keras_hub.models.Backbone`s: Functional
models built in `__init__` from typed hyper-parameters, whose `get_config`
returns those hyper-parameters, so that keras-hub's preset machinery works on
them unchanged. `save_to_preset(folder)` writes keras-hub's preset folder
(`config.json`: the serialized backbone; `model.weights.h5`; `metadata.json`)
and `BEATsBackbone.from_preset(folder)`, or
`keras_hub.models.Backbone.from_preset(folder)` once the classes are
imported (`from asd_keras.models import BEATsBackbone, EATBackbone`), loads it back.

Both take 16 kHz waveforms `(batch, samples)` and return a dict:

- `"fbank"`: the normalised Kaldi filter banks the encoder sees
  (`KaldiFbank`, methods.md §C1/§C2), `(batch, frames, 128)`;
- `"layer_0"`: the tokens entering the first transformer layer, and
  `"layer_<i>"` the output of layer `i` (1-based), `(batch, tokens, dim)`;
- fine-tuned variants (`num_classes > 0`) add `"logits"` (EAT) or
  `"probabilities"` (BEATs).

Tokens are a time-major grid of 16 x 16 patches: token `t * num_bands + f`
with `num_bands = 128 / 16 = 8`, after `num_extra_tokens` leading tokens
(EAT's CLS; BEATs has none).
"""

import json
import os
import tempfile
from pathlib import Path

import keras
from keras_hub.models import Backbone

from asd_keras.models.audio_tokens import PRESET_CONFIG
from asd_keras.models.audio_tokens import PRESET_METADATA
from asd_keras.models.audio_tokens import PRESET_WEIGHTS
from asd_keras.models.audio_tokens import file_sha256
from asd_keras.utils.io import atomic_write_text



class AudioEncoder(Backbone):
    """Base of `BEATsBackbone` and `EATBackbone` (a keras-hub `Backbone`).

    Subclasses build their Functional graph in `__init__`, then set one
    attribute per constructor argument (listed in `hyperparameters`) and
    `frontend` (their `KaldiFbank`).

    Attributes:
        encoder_type: str. `"beats"` or `"eat"`.
        num_extra_tokens: int. Tokens before the patch grid (EAT's CLS).
        hyperparameters: tuple of str. The constructor's arguments that
            `get_config` returns.
    """

    encoder_type = None
    num_extra_tokens = 0
    hyperparameters = ()

    @property
    def num_bands(self):
        """Frequency patches per time patch."""
        return self.num_mel_bins // self.patch_size

    @property
    def layer_names(self):
        """`"layer_0"` ... `"layer_<num_layers>"`, the token outputs."""
        return [f"layer_{i}" for i in range(self.num_layers + 1)]

    def get_config(self):
        """keras-hub's `name`, `trainable` and `dtype`, and every name of
        `hyperparameters` with its value."""
        config = super().get_config()
        config.update({name: getattr(self, name) for name in self.hyperparameters})
        return config

    def token_count(self, num_samples):
        """Tokens (extra tokens included) of a clip of `num_samples`."""
        frames = self.frontend.num_frames or self.frontend.frames_for(num_samples)
        return (frames // self.patch_size) * self.num_bands + self.num_extra_tokens

    def save_to_preset(self, preset_dir, max_shard_size=10, metadata=None):
        """Writes keras-hub's preset folder, each file atomically.

        keras-hub writes the files in place; here they are written to a
        staging folder inside `preset_dir` first and each is then renamed
        into place (`config.json` last), so an interrupted save never
        leaves a half-written file.

        Args:
            preset_dir: str or Path. The folder (created if needed; its
                files of the same names are replaced).
            max_shard_size: int or float. As keras-hub's (GB per weights
                file).
            metadata: dict or None. Entries added to keras-hub's
                `metadata.json` (e.g. the checkpoint a preset was converted
                from), beside `weights_sha256`.

        Returns:
            dict: the metadata written.
        """
        folder = Path(preset_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder, prefix=".staging-") as staging:
            super().save_to_preset(staging, max_shard_size=max_shard_size)
            written = json.loads((Path(staging) / PRESET_METADATA).read_text())
            written.update(metadata or {})
            written["weights_sha256"] = file_sha256(Path(staging) / PRESET_WEIGHTS)
            atomic_write_text(Path(staging) / PRESET_METADATA,
                              json.dumps(written, indent=2, sort_keys=True))
            names = sorted(os.listdir(staging), key=lambda n: (n == PRESET_CONFIG, n))
            for name in names:
                with open(Path(staging) / name, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(Path(staging) / name, folder / name)
        return written
