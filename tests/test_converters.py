"""`asd-keras convert` on the official EAT checkpoint layouts, without torch.

Each layout is built here from the tiny EAT fixture's weights (whose
reference outputs `tools/eat_reference.py` computed, `tests/data/encoders/
eat_tiny.npz`) with the key names and configuration of the official code
(`tools/official_checkpoints.py`: pre-training with its `_ema` teacher and
decoder, fine-tuned with `fc_norm`/`head` beside the `model.` prefix, enums
pickled as objects, Hugging Face safetensors) and written as `torch.save`
writes it; `tests/test_encoder_parity.py` checks that writer and this
reader against torch itself (`make parity`).
"""

import json
import io
import pickle
import re
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from asd_keras.models.audio_encoders import load_encoder
from asd_keras.models.converters import convert_checkpoint
from asd_keras.models.converters import read_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import official_checkpoints as official  # noqa: E402

FIXTURES = Path(__file__).parent / "data" / "encoders"
# The tiny fixture's measured parity is about 2e-5 (tests/test_audio_encoders.py).
PARITY = dict(rtol=0, atol=1e-4)
NUM_FRAMES = {"num_frames": 96}  # the fixture's 1 s clips; the file cannot tell


def _eat_fixture():
    with np.load(FIXTURES / "eat_tiny.npz") as archive:
        arrays = {k: archive[k] for k in archive.files}
    state = {k[len("state/"):]: v for k, v in arrays.items() if k.startswith("state/")}
    reference = {k[len("reference/"):]: v for k, v in arrays.items()
                 if k.startswith("reference/")}
    return json.loads(str(arrays["config"])), state, reference, arrays["waveform"]


CONFIG, STATE, REFERENCE, WAVEFORM = _eat_fixture()
RNG = np.random.default_rng(4)
HEAD = {"fc_norm.weight": (1 + 0.1 * RNG.standard_normal(32)).astype("float32"),
        "fc_norm.bias": (0.02 * RNG.standard_normal(32)).astype("float32"),
        "head.weight": (0.2 * RNG.standard_normal((5, 32))).astype("float32"),
        "head.bias": (0.02 * RNG.standard_normal(5)).astype("float32")}


def _reference_logits():
    # CLS_TOKEN mode: fc_norm (LayerNorm eps 1e-6) and head on the CLS token.
    cls = REFERENCE["layer_2"][:, 0].astype("float64")
    normed = (cls - cls.mean(-1, keepdims=True)) / np.sqrt(cls.var(-1, keepdims=True) + 1e-6)
    normed = normed * HEAD["fc_norm.weight"] + HEAD["fc_norm.bias"]
    return normed @ HEAD["head.weight"].T.astype("float64") + HEAD["head.bias"]


def _write(layout, folder, enum_cfg=False):
    """The file of one official layout and the overrides it needs."""
    if layout == "pretraining":
        checkpoint = official.eat_pretraining_checkpoint(STATE, CONFIG, enum_cfg=enum_cfg)
        return official.save_torch_zip(checkpoint, folder / "EAT_pretrain.pt"), NUM_FRAMES
    if layout == "finetuned":
        checkpoint = official.eat_finetuned_checkpoint(STATE, CONFIG, HEAD, enum_cfg=enum_cfg)
        return official.save_torch_zip(checkpoint, folder / "EAT_finetune.pt"), NUM_FRAMES
    from safetensors.numpy import save_file
    path = folder / "model.safetensors"
    save_file(official.eat_hugging_face_state(STATE, HEAD), str(path))
    return path, {**NUM_FRAMES, "num_heads": 4}  # no cfg in a safetensors file


@pytest.mark.parametrize("layout, enum_cfg, dropped", [
    ("pretraining", False, {"_ema": 30, "modality_encoders.IMAGE.decoder.": 6}),
    ("pretraining", True, {"_ema": 30, "modality_encoders.IMAGE.decoder.": 6}),
    ("finetuned", False, {}),
    ("finetuned", True, {}),
    ("huggingface", False, {}),
])
def test_official_eat_layouts_convert_and_reproduce_the_reference(layout, enum_cfg, dropped,
                                                                 tmp_path):
    path, overrides = _write(layout, tmp_path, enum_cfg)
    metadata = convert_checkpoint("eat", path, tmp_path / "preset", overrides=overrides,
                                  trust_pickle=enum_cfg)
    # Pre-training keys are counted per group; the teacher's values differ
    # from the student's, so taking them would break the parity below.
    assert metadata["dropped_groups"] == dropped
    assert metadata["dropped"] == sum(dropped.values())
    assert metadata["keys"] == 30 + (4 if layout != "pretraining" else 0)
    assert metadata["prefix"] == ("" if layout == "pretraining" else "model.")
    encoder, _ = load_encoder(str(tmp_path / "preset"))
    # dim 32 has no default head count: 4 came from the cfg (the fine-tuned
    # file keeps it under cfg.model.pretrained_model_args.model).
    assert encoder.get_config()["num_heads"] == 4
    outputs = {k: keras.ops.convert_to_numpy(v) for k, v in encoder(WAVEFORM).items()}
    for name, expected in REFERENCE.items():
        np.testing.assert_allclose(outputs[name], expected, err_msg=name, **PARITY)
    if layout == "pretraining":
        assert "logits" not in outputs
    else:
        np.testing.assert_allclose(outputs["logits"], _reference_logits(), rtol=1e-4,
                                   atol=1e-4)


def test_pickled_enums_need_trust_and_never_import_their_module(tmp_path):
    path, _ = _write("finetuned", tmp_path, enum_cfg=True)
    # The original failure: plain unpickling imports EAT's module.
    with zipfile.ZipFile(path) as archive:
        data = archive.read("archive/data.pkl")
    with pytest.raises(ModuleNotFoundError, match="No module named 'EAT'"):
        pickle.Unpickler(io.BytesIO(data)).load()
    with pytest.raises(ValueError, match=r"EAT_pretraining.Modality', 'EAT.models.images."
                                         r"Modality'\].*convert again with --trust-pickle"):
        read_checkpoint(path)
    _, cfg = read_checkpoint(path, trust_pickle=True)
    model = cfg["model"]
    assert model["prediction_mode"] == 2  # PredictionMode.CLS_TOKEN = auto() = 2
    assert model["pretrained_model_args"]["model"]["supported_modality"] == 2
    assert "EAT" not in sys.modules


@pytest.mark.parametrize("finetuned", [False, True])
@pytest.mark.parametrize("flag, value, shown", [
    ("layer_norm_first", True, "layer_norm_first=True; the EAT port implements "
                               "layer_norm_first=False"),
    ("norm_eps", 1e-5, "norm_eps=1e-05; the EAT port implements norm_eps=1e-06"),
    ("modalities", {"image": {"use_alibi_encoder": True}},
     "modalities.image.use_alibi_encoder=True; the EAT port implements "
     "modalities.image.use_alibi_encoder=False"),
])
def test_eat_architecture_flags_the_port_lacks_are_refused(flag, value, shown, finetuned,
                                                           tmp_path):
    if finetuned:
        checkpoint = official.eat_finetuned_checkpoint(STATE, CONFIG, HEAD)
        checkpoint["cfg"]["model"]["pretrained_model_args"]["model"][flag] = value
        where = "model.pretrained_model_args.model."
    else:
        checkpoint = official.eat_pretraining_checkpoint(STATE, CONFIG)
        checkpoint["cfg"]["model"][flag] = value
        where = "model."
    path = official.save_torch_zip(checkpoint, tmp_path / "eat.pt")
    with pytest.raises(ValueError, match=re.escape(f"cfg has {where}{shown}")):
        convert_checkpoint("eat", path, tmp_path / "preset", overrides=NUM_FRAMES)
    assert not (tmp_path / "preset").exists()


def test_fine_tuning_cfg_overrides_and_prediction_mode(tmp_path):
    checkpoint = official.eat_finetuned_checkpoint(STATE, CONFIG, HEAD)
    checkpoint["cfg"]["model"]["norm_eps"] = 1e-5  # MaeImageClassificationConfig.norm_eps
    path = official.save_torch_zip(checkpoint, tmp_path / "eps.pt")
    with pytest.raises(ValueError, match=r"model\.pretrained_model_args\.model\.norm_eps=1e-05"):
        convert_checkpoint("eat", path, tmp_path / "a", overrides=NUM_FRAMES)
    checkpoint = official.eat_finetuned_checkpoint(STATE, CONFIG, HEAD)
    checkpoint["cfg"]["model"]["prediction_mode"] = "MEAN_POOLING"
    path = official.save_torch_zip(checkpoint, tmp_path / "mean.pt")
    with pytest.raises(ValueError, match=r"prediction_mode='MEAN_POOLING'; the EAT port "
                                         r"classifies from the CLS token"):
        convert_checkpoint("eat", path, tmp_path / "b", overrides=NUM_FRAMES)


def test_the_fine_tuned_state_dict_alone_converts(tmp_path):
    # The official fine-tuned keys without a cfg (as a state dict saved on
    # its own): fc_norm.* and head.* beside the model. prefix.
    state = official.eat_finetuned_checkpoint(STATE, CONFIG, HEAD)["model"]
    assert "head.weight" in state and "model.head.weight" not in state
    np.savez(tmp_path / "finetuned.npz", **state)
    metadata = convert_checkpoint("eat", tmp_path / "finetuned.npz", tmp_path / "preset",
                                  overrides={**NUM_FRAMES, "num_heads": 4})
    assert (metadata["prefix"], metadata["keys"]) == ("model.", 34)
    encoder, _ = load_encoder(str(tmp_path / "preset"))
    logits = keras.ops.convert_to_numpy(encoder(WAVEFORM)["logits"])
    np.testing.assert_allclose(logits, _reference_logits(), rtol=1e-4, atol=1e-4)


def test_unknown_overrides_non_finite_weights_and_foreign_files_are_refused(tmp_path):
    np.savez(tmp_path / "eat.npz", **STATE)
    overrides = {**NUM_FRAMES, "num_heads": 4}
    with pytest.raises(ValueError, match=r"Unknown eat encoder argument\(s\) \['bogus'\] given "
                                         r"to convert; the valid ones are \[.*'num_frames'"):
        convert_checkpoint("eat", tmp_path / "eat.npz", tmp_path / "p",
                           overrides={**overrides, "bogus": 1})
    for bad in (np.nan, np.inf):
        state = dict(STATE)
        state["blocks.1.mlp.fc2.weight"] = state["blocks.1.mlp.fc2.weight"].copy()
        state["blocks.1.mlp.fc2.weight"][3, 5] = bad
        np.savez(tmp_path / "diverged.npz", **state)
        with pytest.raises(ValueError, match=r"'blocks\.1\.mlp\.fc2\.weight' holds 1 NaN or "
                                             r"infinite value\(s\) of 4096"):
            convert_checkpoint("eat", tmp_path / "diverged.npz", tmp_path / "p",
                               overrides=overrides)
    assert not (tmp_path / "p").exists()
    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match=r"Checkpoint '.*noise\.pt' is not a PyTorch "
                                         r"checkpoint") as error:
        convert_checkpoint("eat", noise, tmp_path / "p", trust_pickle=True)
    assert "--trust-pickle" not in str(error.value)
    # A foreign key outside the prefix is still a mixed file.
    mixed = official.eat_finetuned_checkpoint(STATE, CONFIG, HEAD)
    mixed["model"]["decoder.proj.weight"] = np.ones((2, 2), np.float32)
    path = official.save_torch_zip(mixed, tmp_path / "mixed.pt")
    with pytest.raises(ValueError, match=r"1 checkpoint keys lack the prefix 'model\.'.*"
                                         r"'decoder\.proj\.weight'.*mixes models"):
        convert_checkpoint("eat", path, tmp_path / "p", overrides=NUM_FRAMES)


def test_reader_rebuilds_tensors_of_every_dtype_and_flattens_nested_state(tmp_path):
    rng = np.random.default_rng(1)
    state = {"f64": rng.standard_normal((2, 3)), "i64": np.arange(6).reshape(3, 2),
             "f16": rng.standard_normal(4).astype("float16"), "flag": np.array([True, False]),
             "scalar": np.array(2.5, np.float32),
             "teacher": {"a": np.ones(3, np.float32), "b": {"c": np.zeros((1, 2), "f4")}},
             "none": None}
    path = official.save_torch_zip({"model": state, "cfg": {"k": [1, "x"]}}, tmp_path / "x.pt")
    read, cfg = read_checkpoint(path)
    assert cfg == {"k": [1, "x"]}
    assert sorted(read) == ["f16", "f64", "flag", "i64", "scalar", "teacher.a", "teacher.b.c"]
    assert all(v.dtype == np.float32 for v in read.values())
    np.testing.assert_allclose(read["f64"], state["f64"], rtol=1e-6)
    np.testing.assert_array_equal(read["i64"], state["i64"])
    np.testing.assert_array_equal(read["f16"], state["f16"].astype("float32"))
    np.testing.assert_array_equal(read["flag"], [1.0, 0.0])
    assert read["scalar"].shape == () and read["teacher.b.c"].shape == (1, 2)
    # A storage shorter than its tensor: a damaged archive, named.
    damaged = tmp_path / "damaged.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(damaged, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[:8] if item.filename == "archive/data/0" else data)
    with pytest.raises(ValueError, match=r"'.*damaged\.pt' is a damaged PyTorch archive.*"
                                         r"overruns its storage"):
        read_checkpoint(damaged)
    other = tmp_path / "other.pt"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="not one torch.save wrote"):
        read_checkpoint(other)


def test_cli_convert_reports_the_dropped_teacher_and_refuses_bogus_overrides(tmp_path, capsys):
    from asd_keras.cli import main

    np.savez(tmp_path / "eat.npz", **STATE)
    assert main(["convert", "--encoder", "eat", "--checkpoint", str(tmp_path / "eat.npz"),
                 "--out", str(tmp_path / "preset"), "num_frames=96", "num_heads=4",
                 "bogus=1"]) == 2
    assert "['bogus']" in capsys.readouterr().err
    assert not (tmp_path / "preset").exists()
    path, _ = _write("pretraining", tmp_path)
    args = ["convert", "--encoder", "eat", "--checkpoint", str(path), "--out",
            str(tmp_path / "preset"), "num_frames=96"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Converted 30 keys" in out
    assert ("36 pre-training keys dropped, as the official remove_pretraining_modules does: "
            "30 of the EMA teacher (pre-training target model) ('_ema'), 6 of the "
            "masked-patch decoder ('modality_encoders.IMAGE.decoder.')") in out
