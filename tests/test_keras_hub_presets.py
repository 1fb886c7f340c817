"""BEATs and EAT as keras-hub Backbones: their preset folders.

`save_to_preset` writes keras-hub's folder and keras-hub's own
`from_preset` (on the class or on `keras_hub.models.Backbone`) loads it; so
does `asd-keras convert`'s output, which gives the PyTorch reference's
tokens (tests/data/encoders/*_tiny.npz) and the frozen extractor's
embeddings. Folders of the earlier format (`{"encoder", "config"}`) still
load with the same fingerprint.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import keras_hub
import numpy as np
import pandas as pd
import pytest
import soundfile

from asd_keras.cli import main
from asd_keras.extractors.base import get_extractor
from asd_keras.models import BEATsBackbone
from asd_keras.models import EATBackbone
from asd_keras.models.audio_encoders import _REGISTERED_NAMES
from asd_keras.models.audio_encoders import build_encoder
from asd_keras.models.audio_encoders import load_encoder
from asd_keras.models.audio_encoders import preset_info
from asd_keras.models.audio_tokens import file_sha256

FIXTURES = Path(__file__).parent / "data" / "encoders"
CLASSES = {"beats": BEATsBackbone, "eat": EATBackbone}
TINY = {"beats": dict(num_layers=1, dim=16, num_heads=2, ffn_dim=32, patch_dim=8, conv_pos=8,
                      conv_pos_groups=2, num_buckets=16, max_distance=32, num_classes=3),
        "eat": dict(num_layers=1, dim=16, num_heads=2, max_length=8, num_frames=64,
                    num_classes=3)}
WAVES = (0.1 * np.random.default_rng(0).standard_normal((2, 8000))).astype("float32")


def _outputs(model, waves=WAVES):
    return {k: keras.ops.convert_to_numpy(v) for k, v in model(waves).items()}


def _assert_same_outputs(model, expected, waves=WAVES):
    got = _outputs(model, waves)
    assert sorted(got) == sorted(expected)
    for name, value in got.items():
        np.testing.assert_allclose(value, expected[name], rtol=0, atol=1e-6, err_msg=name)


def _saved(encoder_type, folder):
    keras.utils.set_random_seed(1)
    backbone = build_encoder(encoder_type, **TINY[encoder_type])
    # Non-default norms and biases, so that a weight left unloaded shows.
    backbone.set_weights([w + 0.05 * np.random.default_rng(2).standard_normal(w.shape)
                          for w in backbone.get_weights()])
    metadata = backbone.save_to_preset(folder, metadata={"checkpoint": "tiny"})
    return backbone, metadata


@pytest.mark.parametrize("encoder_type", ["beats", "eat"])
def test_save_to_preset_then_from_preset_gives_the_same_backbone(encoder_type, tmp_path):
    folder = tmp_path / "preset"
    backbone, metadata = _saved(encoder_type, folder)
    expected = _outputs(backbone)
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "metadata.json", "model.weights.h5"]  # no staging folder left
    config = json.loads((folder / "config.json").read_text())
    cls = CLASSES[encoder_type]
    assert config["registered_name"] == f"asd_keras>{cls.__name__}"
    written = json.loads((folder / "metadata.json").read_text())
    assert written == metadata and written["checkpoint"] == "tiny"
    assert written["keras_hub_version"] == keras_hub.__version__
    assert written["weights_sha256"] == file_sha256(folder / "model.weights.h5")
    assert written["parameter_count"] == backbone.count_params()
    loaders = {"class": cls.from_preset, "keras_hub": keras_hub.models.Backbone.from_preset,
               "load_encoder": lambda path: load_encoder(path)[0]}
    for how, load in loaders.items():
        restored = load(str(folder))
        assert type(restored) is cls, how
        assert restored.get_config() == backbone.get_config(), how
        _assert_same_outputs(restored, expected)
    info = preset_info(str(folder))
    assert info["keras_hub"] and info["pretrained"] and info["source"] == "tiny"
    assert info["encoder"] == encoder_type
    assert info["config"] == {k: v for k, v in backbone.get_config().items()
                              if k not in ("name", "trainable", "dtype")}


def test_from_preset_takes_front_end_overrides_and_checks_the_class(tmp_path):
    _saved("eat", tmp_path / "eat")
    shorter = EATBackbone.from_preset(str(tmp_path / "eat"), num_frames=32)
    assert shorter.num_frames == 32 and shorter.token_count(8000) == 2 * 8 + 1
    same, _ = load_encoder(str(tmp_path / "eat"), overrides={"num_frames": 32})
    _assert_same_outputs(same, _outputs(shorter))
    with pytest.raises(ValueError, match="EATBackbone.*not a subclass of.*BEATsBackbone"):
        BEATsBackbone.from_preset(str(tmp_path / "eat"))
    # A keras-hub folder of another model is named, with the way out.
    other = tmp_path / "bert"
    shutil.copytree(tmp_path / "eat", other)
    config = json.loads((other / "config.json").read_text())
    config["registered_name"] = "keras_hub>BertBackbone"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="keras_hub>BertBackbone.*convert the checkpoint"):
        preset_info(str(other))


@pytest.mark.parametrize("encoder_type", ["beats", "eat"])
def test_from_preset_dtype_reaches_every_layer(encoder_type, tmp_path):
    backbone, _ = _saved(encoder_type, tmp_path / "preset")
    mixed = CLASSES[encoder_type].from_preset(str(tmp_path / "preset"), dtype="mixed_bfloat16")
    assert {layer.dtype_policy.name for layer in mixed.layers if layer.weights} == {
        "mixed_bfloat16"}
    for saved, loaded in zip(backbone.weights, mixed.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded),
                                      keras.ops.convert_to_numpy(saved))
    outputs = mixed(WAVES)
    assert keras.backend.standardize_dtype(outputs["layer_1"].dtype) == "bfloat16"
    # bfloat16 keeps 8 bits of mantissa: the tokens (LayerNorm outputs, of
    # order 1) differ from float32's by a few hundredths.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs["layer_1"]).astype("float32"),
                               _outputs(backbone)["layer_1"], rtol=0, atol=0.1)


@pytest.mark.parametrize("encoder_type", ["beats", "eat"])
def test_a_folder_of_the_earlier_format_loads_with_the_same_fingerprint(encoder_type,
                                                                        tmp_path):
    backbone, _ = _saved(encoder_type, tmp_path / "new")
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(tmp_path / "new" / "model.weights.h5", old / "model.weights.h5")
    config = {k: v for k, v in backbone.get_config().items()
              if k not in ("name", "trainable", "dtype")}
    (old / "config.json").write_text(json.dumps({"encoder": encoder_type, "config": config}))
    (old / "metadata.json").write_text(json.dumps({"pretrained": True}))
    info = preset_info(str(old))
    assert not info["keras_hub"]
    assert info["fingerprint"] == preset_info(str(tmp_path / "new"))["fingerprint"]
    restored, _ = load_encoder(str(old))
    assert type(restored) is CLASSES[encoder_type]
    _assert_same_outputs(restored, _outputs(backbone))


@pytest.mark.parametrize("encoder_type, extra", [
    ("eat", ["num_frames=96", "num_heads=4"]), ("beats", [])])
def test_convert_writes_a_keras_hub_preset_with_the_reference_tokens(encoder_type, extra,
                                                                     tmp_path):
    with np.load(FIXTURES / f"{encoder_type}_tiny.npz") as archive:
        arrays = {k: archive[k] for k in archive.files}
    state = {k[len("state/"):]: v for k, v in arrays.items() if k.startswith("state/")}
    np.savez(tmp_path / "state.npz", **state)
    preset = tmp_path / "preset"
    assert main(["convert", "--encoder", encoder_type, "--checkpoint",
                 str(tmp_path / "state.npz"), "--out", str(preset), *extra]) == 0
    backbone = keras_hub.models.Backbone.from_preset(str(preset))
    assert type(backbone) is CLASSES[encoder_type]
    outputs = _outputs(backbone, arrays["waveform"])
    for name in ("fbank", "layer_0", "layer_1", "layer_2"):
        # The fixture's measured parity is about 2e-5 (test_audio_encoders.py).
        np.testing.assert_allclose(outputs[name], arrays[f"reference/{name}"], rtol=0,
                                   atol=1e-4, err_msg=name)
    # The frozen extractor on that folder pools these tokens.
    paths = []
    for i, wave in enumerate(arrays["waveform"]):
        paths.append(tmp_path / f"clip{i}.wav")
        soundfile.write(paths[-1], wave, 16000, subtype="FLOAT")
    extractor = get_extractor("frozen_encoder", encoder=encoder_type, preset=str(preset),
                              layer=2, pooling="mean", clip_seconds=None, cache_dir="none",
                              jit_compile=False)
    embeddings = extractor.transform(pd.DataFrame({"path": paths}))["layer_2"]
    extra_tokens = backbone.num_extra_tokens
    np.testing.assert_allclose(embeddings, outputs["layer_2"][:, extra_tokens:].mean(axis=1),
                               rtol=1e-5, atol=1e-5)


def test_keras_hub_is_imported_only_with_the_backbones():
    """keras-hub takes about 2 s to import: the systems, the CLI's training
    path and the models package do without it until a backbone is used."""
    code = ("import sys, asd_keras.systems, asd_keras.models, asd_keras.extractors\n"
            "print('keras_hub' in sys.modules)\n"
            "from asd_keras.models import EATBackbone\n"
            "print('keras_hub' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True"]


def test_registered_names_are_the_classes_own():
    assert _REGISTERED_NAMES == {keras.saving.get_registered_name(BEATsBackbone): "beats",
                                 keras.saving.get_registered_name(EATBackbone): "eat"}
