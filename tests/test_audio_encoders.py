"""BEATs and EAT ports: front end, layers, models, converters and presets.

The references are the PyTorch originals (speechbrain's BEATs and
`tools/eat_reference.py`, with `torchaudio.compliance.kaldi.fbank`): their
outputs for tiny configurations are committed fixtures that
`tools/encoder_parity.py fixtures` wrote, so this file needs no torch. The
full-size check against the live references is `make parity`.
"""

import json
import math
import sys

import keras
import numpy as np
import pytest

from asd_keras.layers.audio_transformers import ClassToken
from asd_keras.layers.audio_transformers import ConvPositionEmbedding
from asd_keras.layers.audio_transformers import FixedPositions
from asd_keras.layers.audio_transformers import FusedSelfAttention
from asd_keras.layers.audio_transformers import GatedRelativeAttention
from asd_keras.layers.audio_transformers import RelativePositionBias
from asd_keras.layers.audio_transformers import relative_position_buckets
from asd_keras.layers.audio_transformers import sincos_positions
from asd_keras.features.kaldi import KaldiFbank
from asd_keras.features.kaldi import kaldi_mel_banks
from asd_keras.models.audio_encoders import build_encoder
from asd_keras.models.audio_encoders import load_encoder
from asd_keras.models.audio_encoders import preset_info
from asd_keras.models.beats_backbone import BEATsBackbone
from asd_keras.models.converters import convert_checkpoint
from asd_keras.models.converters import convert_state_dict
from asd_keras.models.converters import fold_weight_norm
from asd_keras.models.converters import random_state_dict
from asd_keras.models.converters import read_checkpoint
from asd_keras.models.eat_backbone import EATBackbone
from pathlib import Path
from tests.helpers import roundtrip_and_save

FIXTURES = Path(__file__).parent / "data" / "encoders"
# Measured parity of the tiny fixtures: about 2e-5 (see the module docstring).
PARITY = dict(rtol=0, atol=1e-4)
RNG = np.random.default_rng(0)


def _fixture(encoder_type):
    with np.load(FIXTURES / f"{encoder_type}_tiny.npz") as archive:
        arrays = {k: archive[k] for k in archive.files}
    state = {k[len("state/"):]: v for k, v in arrays.items() if k.startswith("state/")}
    reference = {k[len("reference/"):]: v for k, v in arrays.items()
                 if k.startswith("reference/")}
    return json.loads(str(arrays["config"])), state, reference, arrays["waveform"]


def _np(x):
    return keras.ops.convert_to_numpy(x)


# ---------------------------------------------------------------- front end


@pytest.mark.parametrize("encoder_type", ["beats", "eat"])
def test_fbank_matches_torchaudio_kaldi_fixture(encoder_type):
    config, _, reference, waveform = _fixture(encoder_type)
    frontend = build_encoder(encoder_type, **config).frontend
    got = _np(frontend(waveform))
    assert got.shape == reference["fbank"].shape
    np.testing.assert_allclose(got, reference["fbank"], **PARITY)


def test_kaldi_mel_banks_by_hand():
    banks = kaldi_mel_banks(4, 16, 16000, low_freq=20.0)
    assert banks.shape == (9, 4)
    assert np.all(banks[-1] == 0.0)  # Kaldi leaves the Nyquist bin out
    mel = lambda f: 1127.0 * math.log(1.0 + f / 700.0)  # noqa: E731
    delta = (mel(8000.0) - mel(20.0)) / 5
    # Bin 3 (3000 Hz) against the triangle of mel band 1 (edges 1, 2, 3).
    m = mel(3000.0)
    left, centre, right = (mel(20.0) + k * delta for k in (1, 2, 3))
    expected = max(0.0, min((m - left) / (centre - left), (right - m) / (right - centre)))
    assert banks[3, 1] == pytest.approx(expected, rel=1e-6)


def test_fbank_frames_padding_and_normalisation_by_hand():
    layer = KaldiFbank(window_type="hanning", num_frames=8, norm_mean=1.0, norm_std=2.0,
                       subtract_waveform_mean=True)
    silent = np.full((1, 16000), 0.25, np.float32)  # a constant: nothing after the mean
    out = _np(layer(silent))
    assert out.shape == (1, 8, 128)
    # log(float32 eps) everywhere, normalised as (x - 1) / 4.
    np.testing.assert_allclose(out, (np.log(np.finfo(np.float32).eps) - 1.0) / 4.0,
                               rtol=1e-6)
    padded = _np(KaldiFbank(num_frames=120, norm_mean=1.0, norm_std=2.0)(
        RNG.normal(size=(1, 16000)).astype("float32")))
    assert padded.shape == (1, 120, 128)
    # Frames 98... are padding added before the normalisation: (0 - 1) / 4.
    np.testing.assert_allclose(padded[0, 98:], -0.25)
    assert KaldiFbank().compute_output_shape((None, 16000)) == (None, 98, 128)


def test_fbank_config_roundtrip_save_and_errors(tmp_path):
    layer = KaldiFbank(window_type="hanning", num_frames=16, norm_mean=-4.268,
                       norm_std=4.569, subtract_waveform_mean=True, name="fbank")
    roundtrip_and_save(layer, RNG.normal(size=(2, 3000)).astype("float32"), tmp_path)
    with pytest.raises(ValueError, match="window_type must be one of .*received 'hamming'"):
        KaldiFbank(window_type="hamming")
    with pytest.raises(ValueError, match="norm_std must be positive; received 0"):
        KaldiFbank(norm_std=0)


# ---------------------------------------------------------------- layers


def _t5_bucket(relative, num_buckets, max_distance):
    """The bidirectional T5 bucket of one relative position, in float32 as
    PyTorch evaluates it."""
    half = num_buckets // 2
    bucket = half if relative > 0 else 0
    distance = abs(relative)
    exact = half // 2
    if distance < exact:
        return bucket + distance
    scaled = (np.float32(np.log(np.float32(distance) / np.float32(exact)))
              / np.float32(math.log(max_distance / exact)) * np.float32(half - exact))
    return bucket + min(exact + int(scaled), half - 1)


def test_relative_position_buckets_by_hand():
    length = 700
    got = _np(relative_position_buckets(length, 320, 800))
    for query, key in [(0, 0), (0, 1), (5, 0), (0, 79), (0, 80), (80, 0), (0, 500), (699, 0),
                       (10, 400), (350, 1)]:
        assert got[query, key] == _t5_bucket(key - query, 320, 800), (query, key)
    assert got.min() == 0 and got.max() <= 319


def test_relative_position_bias_layer(tmp_path):
    layer = RelativePositionBias(num_heads=3, num_buckets=32, max_distance=64, name="bias")
    tokens = np.zeros((2, 10, 4), np.float32)
    out = roundtrip_and_save(layer, tokens, tmp_path)
    assert out.shape == (3, 10, 10)
    buckets = _np(relative_position_buckets(10, 32, 64))
    table = _np(layer.embeddings)
    np.testing.assert_allclose(out, np.transpose(table[buckets], (2, 0, 1)))
    with pytest.raises(ValueError, match="max_distance"):
        RelativePositionBias(num_heads=2, num_buckets=32, max_distance=4)


def _heads(x, heads):
    b, n, d = x.shape
    return x.reshape(b, n, heads, d // heads).transpose(0, 2, 1, 3)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_gated_relative_attention_by_hand(tmp_path):
    dim, heads, n = 8, 2, 5
    layer = GatedRelativeAttention(dim, heads, name="attn")
    tokens = RNG.normal(size=(2, n, dim)).astype("float32")
    bias = RNG.normal(size=(heads, n, n)).astype("float32")
    layer([tokens, bias])
    for w in layer.weights:  # non-trivial biases and gate scales
        w.assign(RNG.normal(size=w.shape).astype("float32") * 0.5 + (w.name == "gate_scale"))
    out = roundtrip_and_save(layer, [tokens, bias], tmp_path)
    weights = {w.name: _np(w).astype("float64") for w in layer.weights}
    x = tokens.astype("float64")
    q = _heads(x @ weights["query_kernel"] + weights["query_bias"], heads)
    k = _heads(x @ weights["key_kernel"] + weights["key_bias"], heads)
    v = _heads(x @ weights["value_kernel"] + weights["value_bias"], heads)
    gates = 1 / (1 + np.exp(-(q @ weights["gate_kernel"] + weights["gate_bias"])
                            .reshape(2, heads, n, 2, 4).sum(-1)))
    gate = gates[..., :1] * (gates[..., 1:] * weights["gate_scale"][None, :, None, None]
                             - 1.0) + 2.0
    logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dim // heads) + gate * bias[None]
    attended = (_softmax(logits) @ v).transpose(0, 2, 1, 3).reshape(2, n, dim)
    expected = attended @ weights["output_kernel"] + weights["output_bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_fused_self_attention_by_hand(tmp_path):
    dim, heads, n = 8, 4, 6
    layer = FusedSelfAttention(dim, heads, name="attn")
    tokens = RNG.normal(size=(3, n, dim)).astype("float32")
    layer(tokens)
    for w in layer.weights:
        w.assign(RNG.normal(size=w.shape).astype("float32") * 0.5)
    out = roundtrip_and_save(layer, tokens, tmp_path)
    w = {v.name: _np(v).astype("float64") for v in layer.weights}
    qkv = tokens.astype("float64") @ w["qkv_kernel"] + w["qkv_bias"]
    q, k, v = (_heads(qkv[..., i * dim:(i + 1) * dim], heads) for i in range(3))
    attended = _softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(dim // heads)) @ v
    expected = attended.transpose(0, 2, 1, 3).reshape(3, n, dim) @ w["output_kernel"] \
        + w["output_bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="dim \\(8\\) must be divisible by num_heads; "
                                         "received 3"):
        FusedSelfAttention(8, 3)


def test_conv_position_embedding_by_hand(tmp_path):
    dim, kernel, groups, n = 4, 4, 2, 7
    layer = ConvPositionEmbedding(dim, kernel, groups, name="pos")
    tokens = RNG.normal(size=(1, n, dim)).astype("float32")
    layer(tokens)
    layer.bias.assign(RNG.normal(size=dim).astype("float32"))
    out = roundtrip_and_save(layer, tokens, tmp_path)
    w, b = _np(layer.kernel), _np(layer.bias)  # (kernel, dim / groups, dim)
    padded = np.pad(tokens[0].astype("float64"), ((2, 2), (0, 0)))
    expected = np.zeros((n, dim))
    per = dim // groups
    for t in range(n):  # the output at t sees padded[t : t + kernel]; the last is dropped
        for o in range(dim):
            g = o // per
            window = padded[t:t + kernel, g * per:(g + 1) * per]
            expected[t, o] = np.sum(window * w[:, :, o]) + b[o]
    from scipy.special import erf
    expected = 0.5 * expected * (1 + erf(expected / math.sqrt(2)))  # exact GELU
    np.testing.assert_allclose(out[0], expected, rtol=1e-4, atol=1e-5)


def test_fold_weight_norm_by_hand():
    v = RNG.normal(size=(6, 3, 4)).astype("float32")
    g = RNG.normal(size=(1, 1, 4)).astype("float32")
    folded = fold_weight_norm(g, v)
    for k in range(4):
        np.testing.assert_allclose(folded[:, :, k], g[0, 0, k] * v[:, :, k]
                                   / np.linalg.norm(v[:, :, k]), rtol=1e-5)


def test_sincos_positions_by_hand_and_fixed_positions(tmp_path):
    table = sincos_positions(8, num_time=3, num_bands=2)
    assert table.shape == (6, 8)
    omega = 1.0 / 10000 ** (np.arange(2) / 2.0)
    t, f = 2, 1  # row t * bands + f; the first half encodes the band
    row = np.concatenate([np.sin(f * omega), np.cos(f * omega),
                          np.sin(t * omega), np.cos(t * omega)])
    np.testing.assert_allclose(table[t * 2 + f], row, rtol=1e-6, atol=1e-7)
    layer = FixedPositions(8, 6, 2, name="positions")
    tokens = RNG.normal(size=(2, 4, 8)).astype("float32")
    out = roundtrip_and_save(layer, tokens, tmp_path)
    np.testing.assert_allclose(out, tokens + table[None, :4], rtol=1e-6)
    assert not layer.trainable_weights
    with pytest.raises(ValueError, match="multiple of num_bands"):
        FixedPositions(8, 7, 2)


def test_class_token(tmp_path):
    layer = ClassToken(4, name="cls")
    tokens = RNG.normal(size=(3, 5, 4)).astype("float32")
    out = roundtrip_and_save(layer, tokens, tmp_path)
    assert out.shape == (3, 6, 4)
    np.testing.assert_allclose(out[:, 1:], tokens)
    np.testing.assert_allclose(out[:, 0], np.broadcast_to(_np(layer.token)[0], (3, 4)))


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("encoder_type", ["beats", "eat"])
def test_tiny_encoder_matches_the_pytorch_reference_fixture(encoder_type):
    config, state, reference, waveform = _fixture(encoder_type)
    encoder = build_encoder(encoder_type, **config)
    convert_state_dict(encoder, state)
    outputs = {k: _np(v) for k, v in encoder(waveform).items()}
    assert set(reference) == set(outputs)
    assert set(outputs) == {"fbank", *encoder.layer_names}
    for name, expected in reference.items():
        np.testing.assert_allclose(outputs[name], expected, err_msg=name, **PARITY)
    tokens = reference["layer_0"].shape[1]
    assert tokens == encoder.token_count(waveform.shape[1])


def test_encoders_save_load_and_config_roundtrip(tmp_path):
    for encoder_type in ("beats", "eat"):
        config, state, _, waveform = _fixture(encoder_type)
        encoder = build_encoder(encoder_type, **config, num_classes=3)
        encoder.set_weights([RNG.normal(size=w.shape).astype("float32") * 0.1
                             if w.trainable else _np(w) for w in encoder.weights])
        expected = {k: _np(v) for k, v in encoder(waveform).items()}
        head = "probabilities" if encoder_type == "beats" else "logits"
        assert expected[head].shape == (2, 3)
        clone = encoder.__class__.from_config(encoder.get_config())
        assert clone.get_config() == encoder.get_config()
        path = tmp_path / f"{encoder_type}.keras"
        encoder.save(path)
        loaded = keras.saving.load_model(path)
        assert isinstance(loaded, (BEATsBackbone, EATBackbone))
        for name, value in loaded(waveform).items():
            np.testing.assert_allclose(_np(value), expected[name], rtol=1e-5, atol=1e-5)


def test_full_size_models_have_the_pytorch_parameter_counts():
    # Built, not run. Counted from speechbrain's BEATs (iter3 cfg) and
    # tools/eat_reference.py: BEATs 90,311,792, of which 128 are the
    # weight-norm gains folded into the position kernel here; EAT-base
    # 89,972,736, of which the fixed table (6144 x 768) is not trained.
    assert build_encoder("beats").count_params() == 90_311_792 - 128
    eat = build_encoder("eat")
    assert eat.count_params() == 89_972_736
    trainable = sum(int(np.prod(w.shape)) for w in eat.trainable_weights)
    assert trainable == 89_972_736 - 6144 * 768


def test_model_argument_errors():
    with pytest.raises(ValueError, match="num_frames must be a multiple of patch_size"):
        EATBackbone(num_layers=1, dim=32, num_heads=4, num_frames=100)
    with pytest.raises(ValueError, match="num_mel_bins \\(120\\) must be a multiple"):
        BEATsBackbone(num_layers=1, dim=32, num_heads=4, num_mel_bins=120)
    with pytest.raises(ValueError, match="encoder must be one of .*received 'ast'"):
        build_encoder("ast")


# ---------------------------------------------------------------- converters


def _npz(path, state):
    np.savez(path, **state)
    return path


@pytest.mark.parametrize("encoder_type, overrides", [
    ("beats", {}), ("eat", {"num_frames": 96, "num_heads": 4})])
def test_convert_npz_to_a_preset_that_loads_and_matches(encoder_type, overrides, tmp_path):
    config, state, reference, waveform = _fixture(encoder_type)
    checkpoint = _npz(tmp_path / "state.npz", state)
    metadata = convert_checkpoint(encoder_type, checkpoint, tmp_path / "preset",
                                  overrides=overrides)
    assert metadata["keys"] == len(state) and metadata["pretrained"]
    info = preset_info(str(tmp_path / "preset"))
    assert info["pretrained"] and info["encoder"] == encoder_type
    assert len(info["fingerprint"]) == 64 and info["fingerprint"] != metadata["weights_sha256"]
    assert preset_info(str(tmp_path / "preset"))["fingerprint"] == info["fingerprint"]
    encoder, _ = load_encoder(str(tmp_path / "preset"))
    assert {k: encoder.get_config()[k] for k in config} == config
    np.testing.assert_allclose(_np(encoder(waveform)["layer_2"]), reference["layer_2"],
                               **PARITY)
    with pytest.raises(FileExistsError):
        convert_checkpoint(encoder_type, checkpoint, tmp_path / "preset", overrides=overrides)


def test_missing_unexpected_and_misshapen_keys_are_named(tmp_path):
    config, state, _, _ = _fixture("beats")
    encoder = build_encoder("beats", **config)
    missing = {k: v for k, v in state.items() if k != "encoder.layers.1.fc2.bias"}
    with pytest.raises(ValueError, match=r"1 missing key\(s\), e.g. \['encoder.layers.1.fc2"):
        convert_state_dict(encoder, missing)
    extra = {**state, "encoder.layers.2.fc1.weight": np.zeros((64, 32), np.float32)}
    with pytest.raises(ValueError, match=r"1 unexpected key\(s\), e.g. \['encoder.layers.2"):
        convert_state_dict(encoder, extra)
    wrong = {**state, "layer_norm.weight": np.ones(17, np.float32)}
    with pytest.raises(ValueError, match=r"'layer_norm.weight' has shape \(17,\); the "
                                         r"configuration expects \(16,\)"):
        convert_state_dict(encoder, wrong)
    unshared = dict(state)
    unshared["encoder.layers.1.self_attn.relative_attention_bias.weight"] = \
        state["encoder.layers.1.self_attn.relative_attention_bias.weight"] + 1.0
    with pytest.raises(ValueError, match="shares one relative position table"):
        convert_state_dict(encoder, unshared)
    with pytest.raises(ValueError, match="looks like an EAT checkpoint"):
        convert_checkpoint("beats", _npz(tmp_path / "eat.npz", _fixture("eat")[1]),
                           tmp_path / "p")


def test_eat_fine_tuned_and_hugging_face_layouts(tmp_path):
    config, state, reference, waveform = _fixture("eat")
    head = {"fc_norm.weight": np.ones(32, np.float32), "fc_norm.bias": np.zeros(32, np.float32),
            "head.weight": RNG.normal(size=(5, 32)).astype("float32"),
            "head.bias": np.zeros(5, np.float32)}
    # Fine-tuned fairseq: every key under "model.", plus pre-training leftovers.
    finetuned = {f"model.{k}": v for k, v in {**state, **head}.items()}
    finetuned["model._ema.blocks.0.norm1.weight"] = np.ones(32, np.float32)
    finetuned["model.modality_encoders.IMAGE.decoder.proj.weight"] = np.ones((4, 4),
                                                                              np.float32)
    metadata = convert_checkpoint("eat", _npz(tmp_path / "ft.npz", finetuned), tmp_path / "ft",
                                  overrides={"num_frames": 96, "num_heads": 4})
    assert (metadata["layout"], metadata["prefix"], metadata["dropped"]) == \
        ("fairseq", "model.", 2)
    encoder, _ = load_encoder(str(tmp_path / "ft"))
    assert encoder.num_classes == 5
    out = encoder(waveform)
    np.testing.assert_allclose(_np(out["layer_2"]), reference["layer_2"], **PARITY)
    cls = reference["layer_2"][:, 0].astype("float64")
    normed = (cls - cls.mean(-1, keepdims=True)) / np.sqrt(cls.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(_np(out["logits"]), normed @ head["head.weight"].T,
                               rtol=1e-4, atol=1e-4)
    # Hugging Face names, with a wrapper prefix (detected, not assumed).
    image = "modality_encoders.IMAGE."
    renamed = {}
    for key, value in state.items():
        key = key.replace(image + "context_encoder.norm.", "pre_norm.").replace(image, "")
        renamed[f"eat.{key}"] = value
    from safetensors.numpy import save_file
    save_file(renamed, str(tmp_path / "model.safetensors"))
    metadata = convert_checkpoint("eat", tmp_path / "model.safetensors", tmp_path / "hf",
                                  overrides={"num_frames": 96, "num_heads": 4})
    assert (metadata["layout"], metadata["prefix"]) == ("huggingface", "eat.")
    encoder, _ = load_encoder(str(tmp_path / "hf"))
    np.testing.assert_allclose(_np(encoder(waveform)["layer_2"]), reference["layer_2"],
                               **PARITY)


def test_pytorch_checkpoints_are_read_without_torch_with_clear_errors(tmp_path, monkeypatch):
    path = tmp_path / "BEATs_iter3.pt"
    path.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # as on a machine without torch
    with pytest.raises(ValueError, match=r"'.*BEATs_iter3\.pt' is not a PyTorch checkpoint: "
                                         r"torch\.save writes a zip archive"):
        read_checkpoint(path)
    with pytest.raises(ValueError, match="suffix '.bin'; expected one of"):
        read_checkpoint(_npz(tmp_path / "x.npz", {}).rename(tmp_path / "x.bin"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(tmp_path / "absent.pt")


def test_the_official_keys_and_shapes_of_the_full_models():
    # The layout of methods.md §H (shapes only: drawing 90 M random values
    # for the full models would only cost time; the tiny fixtures above
    # check random_state_dict's values end to end).
    from asd_keras.models.converters import beats_entries
    from asd_keras.models.converters import eat_entries

    beats = {e.key: e.shape for e in beats_entries({})}
    assert beats["patch_embedding.weight"] == (512, 1, 16, 16)
    assert beats["post_extract_proj.weight"] == (768, 512)
    assert beats["encoder.pos_conv.0.weight_v"] == (768, 48, 128)
    assert beats["encoder.pos_conv.0.weight_g"] == (1, 1, 128)
    assert beats["encoder.layers.11.self_attn.grep_linear.weight"] == (8, 64)
    assert beats["encoder.layers.0.self_attn.grep_a"] == (1, 12, 1, 1)
    assert beats["encoder.layers.0.self_attn.relative_attention_bias.weight"] == (320, 12)
    assert len([k for k in beats if k.startswith("encoder.layers.0.")]) == 20
    assert len(beats) == 12 * 20 + 10
    eat = {e.key: e.shape for e in eat_entries({"num_layers": 24, "dim": 1024,
                                                "num_heads": 16})}
    assert eat["modality_encoders.IMAGE.fixed_positional_encoder.positions"] == (1, 6144, 1024)
    assert eat["blocks.23.attn.qkv.weight"] == (3072, 1024)
    assert len(eat) == 24 * 12 + 6
    tiny = random_state_dict("beats", _fixture("beats")[0], seed=1)
    shared = [v for k, v in tiny.items() if k.endswith("relative_attention_bias.weight")]
    assert len(shared) == 2 and np.array_equal(shared[0], shared[1])
    assert set(tiny) == {e.key for e in beats_entries(_fixture("beats")[0])}


def test_cli_convert_and_its_errors(tmp_path, capsys):
    from asd_keras.cli import main

    _, state, _, _ = _fixture("eat")
    checkpoint = _npz(tmp_path / "eat.npz", state)
    out = tmp_path / "preset"
    args = ["convert", "--encoder", "eat", "--checkpoint", str(checkpoint), "--out", str(out)]
    assert main(args + ["num_frames=96"]) == 2
    assert "number of heads of an EAT of width 32" in capsys.readouterr().err
    assert not out.exists()
    assert main(args + ["num_frames=96", "num_heads=4"]) == 0
    assert "Converted 30 keys" in capsys.readouterr().out
    assert main(args + ["num_frames=96", "num_heads=4"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(args + ["num_frames=96", "num_heads=4", "--force"]) == 0
    assert main(["convert", "--encoder", "beats", "--checkpoint", str(tmp_path / "none.pt"),
                 "--out", str(tmp_path / "p2")]) == 2
    assert "does not exist" in capsys.readouterr().err
