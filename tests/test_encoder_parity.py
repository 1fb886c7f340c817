"""Checks that need torch and the PyTorch references (`make parity`).

Skipped where torch is not installed (the default `make test`, which
compares against the committed fixtures instead). `make parity` installs
the references and also runs the full-size check of
`tools/encoder_parity.py`.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("speechbrain")

pytestmark = pytest.mark.parity
TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))

import encoder_parity  # noqa: E402

from asd_keras.models.audio_encoders import load_encoder  # noqa: E402
from asd_keras.models.converters import convert_checkpoint  # noqa: E402
from asd_keras.models.converters import random_state_dict  # noqa: E402

TINY = {label: (kind, config) for label, kind, config in encoder_parity.TINY}
WAVE = np.stack([encoder_parity.test_clip(1.0, seed=s) for s in (5, 6)])


def _outputs(encoder, wave):
    return {k: np.asarray(v) for k, v in encoder(wave).items()}


@pytest.mark.parametrize("label", ["beats", "eat"])
def test_pt_checkpoints_convert_and_match_the_live_references(label):
    kind, config = TINY[label]
    _, reference, encoder = encoder_parity.reference_and_port(kind, config, WAVE, seed=7)
    outputs = _outputs(encoder, WAVE)
    for name, expected in reference.items():
        if name == "fbank_float64":
            continue
        # The layers' bound is 1e-4; the fbank's grows with torchaudio's own
        # float32 error on this clip (the log of a quiet bin amplifies
        # rounding; see encoder_parity.FBANK_FACTOR).
        atol = 1e-4
        if name == "fbank":
            atol = encoder_parity.fbank_tolerance(reference, atol)[0]
        np.testing.assert_allclose(outputs[name], expected, rtol=0, atol=atol, err_msg=name)


def test_committed_fixtures_are_what_the_references_give(tmp_path):
    encoder_parity.fixtures(tmp_path)
    committed = Path(__file__).parent / "data" / "encoders"
    for name in ("beats_tiny.npz", "eat_tiny.npz"):
        with np.load(tmp_path / name) as new, np.load(committed / name) as old:
            assert sorted(new.files) == sorted(old.files)
            for key in old.files:
                if key == "config":
                    assert str(new[key]) == str(old[key])
                else:
                    np.testing.assert_allclose(new[key], old[key], rtol=0, atol=1e-5,
                                               err_msg=f"{name}:{key}")


def test_speechbrain_state_dict_names_and_pickled_configs(tmp_path):
    from speechbrain.lobes.models.beats import BEATs

    kind, config = TINY["beats"]
    state = random_state_dict(kind, config, seed=2)
    official = tmp_path / "official.pt"
    torch.save({"cfg": encoder_parity.beats_cfg(config),
                "model": {k: torch.from_numpy(v) for k, v in state.items()}}, official)
    model = BEATs(ckp_path=str(official), freeze=True)
    # speechbrain's own names: parametrizations.weight.original0/1.
    resaved = tmp_path / "speechbrain.pt"
    torch.save({"cfg": encoder_parity.beats_cfg(config), "model": model.state_dict()}, resaved)
    assert any("parametrizations" in k for k in model.state_dict())
    convert_checkpoint("beats", official, tmp_path / "a")
    convert_checkpoint("beats", resaved, tmp_path / "b")
    a = _outputs(load_encoder(str(tmp_path / "a"))[0], WAVE)
    b = _outputs(load_encoder(str(tmp_path / "b"))[0], WAVE)
    np.testing.assert_allclose(a["layer_2"], b["layer_2"], rtol=0, atol=1e-5)
    # A configuration pickled as a Python object (as fairseq's) needs trust.
    pickled = tmp_path / "pickled.pt"
    torch.save({"cfg": argparse.Namespace(**encoder_parity.beats_cfg(config)),
                "model": {k: torch.from_numpy(v) for k, v in state.items()}}, pickled)
    with pytest.raises(ValueError, match="--trust-pickle"):
        convert_checkpoint("beats", pickled, tmp_path / "c")
    convert_checkpoint("beats", pickled, tmp_path / "c", trust_pickle=True)
    c = _outputs(load_encoder(str(tmp_path / "c"))[0], WAVE)
    np.testing.assert_allclose(c["layer_2"], a["layer_2"], rtol=0, atol=1e-6)


def test_torch_free_checkpoint_writer_and_reader_agree_with_torch(tmp_path, monkeypatch):
    """The `.pt` fixtures of tests/test_converters.py load in torch as
    written, and torch.save's own files of the official EAT structure (the
    teacher as a nested `_ema` mapping, an enum of a module that is gone
    when reading) read the same without torch."""
    import enum
    import types

    import official_checkpoints as official
    from eat_reference import EATReference

    from asd_keras.models.converters import read_checkpoint

    kind, config = TINY["eat"]
    state = random_state_dict(kind, config, seed=5)
    checkpoint = official.eat_pretraining_checkpoint(state, config)
    loaded = torch.load(official.save_torch_zip(checkpoint, tmp_path / "w.pt"),
                        weights_only=True)
    assert loaded["cfg"] == checkpoint["cfg"]
    for key, value in state.items():
        np.testing.assert_array_equal(loaded["model"][key].numpy(), value)
        np.testing.assert_array_equal(loaded["model"]["_ema"][key].numpy(),
                                      checkpoint["model"]["_ema"][key])
    # torch.save of the reference module's state dict, teacher and an enum.
    module = types.ModuleType("EAT.models.EAT_pretraining")

    class Modality(enum.Enum):
        AUDIO = enum.auto()
        IMAGE = enum.auto()

    Modality.__module__, Modality.__qualname__ = module.__name__, "Modality"
    module.Modality = Modality
    for name in ("EAT", "EAT.models"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    reference = EATReference(embed_dim=32, depth=2, num_heads=4, max_length=64, seed=1)
    student = reference.state_dict()
    teacher = {k: v + 1 for k, v in student.items()}
    path = tmp_path / "torch.pt"
    torch.save({"cfg": {"model": {"num_heads": 4, "supported_modality": Modality.IMAGE}},
                "model": {**student, "_ema": teacher}}, path)
    monkeypatch.delitem(sys.modules, module.__name__)
    with pytest.raises(ValueError, match="EAT.models.EAT_pretraining.Modality"):
        read_checkpoint(path)
    read, cfg = read_checkpoint(path, trust_pickle=True)
    assert cfg["model"]["supported_modality"] == 2
    for key, value in student.items():
        np.testing.assert_array_equal(read[key], value.numpy())
        np.testing.assert_array_equal(read[f"_ema.{key}"], teacher[key].numpy())
