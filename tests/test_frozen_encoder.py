"""The frozen BEATs/EAT extractor and system, on the tiny converted presets.

The presets are made by `asd-keras convert` from the official-layout state
dicts of tests/data/encoders/{beats,eat}_tiny.npz (2 layers of width 32), so
every test runs the real encoders on 1 s synthetic clips. The embedding
cache of every test is a temporary folder.
"""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
from tests.conftest import make_synthetic
from tests.helpers import assert_close_to_scale
from tests.helpers import assert_decisions_match

from asd_keras.cli import main
from asd_keras.data.layouts import read_dataset
from asd_keras.data.synthetic import synthetic_data_root
from asd_keras.extractors import frozen_encoder as frozen_module
from asd_keras.extractors.base import get_extractor
from asd_keras.extractors.base import load_extractor
from asd_keras.extractors.frozen_encoder import CACHE_ENV
from asd_keras.extractors.frozen_encoder import FrozenEncoderExtractor

FIXTURES = Path(__file__).parent / "data" / "encoders"
RATE = 16000
NUM_BANDS = 8
DIM = 32  # width of the tiny encoders


def _run(*args):
    return main([str(a) for a in args])


def _extractor(**config):
    # XLA compiles each new extractor's encoder (seconds, even for the tiny
    # ones): the tests run without it unless they test it.
    config.setdefault("jit_compile", False)
    return get_extractor("frozen_encoder", **config)


@pytest.fixture(scope="module", autouse=True)
def embedding_cache(tmp_path_factory):
    """`ASD_KERAS_CACHE` of the whole module: nothing goes to the home folder."""
    root = tmp_path_factory.mktemp("embedding_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(root))
        yield root


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """Preset folders written by `asd-keras convert` from .npz state dicts."""
    base = tmp_path_factory.mktemp("presets")
    out = {}
    for encoder, extra in (("eat", ["num_frames=96", "num_heads=4"]), ("beats", [])):
        with np.load(FIXTURES / f"{encoder}_tiny.npz") as archive:
            state = {k[len("state/"):]: archive[k] for k in archive.files
                     if k.startswith("state/")}
        checkpoint = base / f"{encoder}_state.npz"
        np.savez(checkpoint, **state)
        out[encoder] = base / f"{encoder}_preset"
        assert _run("convert", "--encoder", encoder, "--checkpoint", checkpoint,
                    "--out", out[encoder], *extra) == 0
        out[f"{encoder}_checkpoint"] = checkpoint
    return out


def _dataset(base, layout):
    root = make_synthetic(base, layout, machine_types=("fan",), train=3, target_train=1,
                          test=2, eval=False)
    dev = synthetic_data_root(root, layout, "dev")
    return dev, read_dataset(dev)


@pytest.fixture(scope="module")
def mono(tmp_path_factory):
    """DCASE 2022 layout: mono clips, sections 00-02."""
    return _dataset(tmp_path_factory.mktemp("mono"), "dcase2022")


@pytest.fixture(scope="module")
def stereo(tmp_path_factory):
    """DCASE 2026 layout: two-channel (near, far) clips, section 00."""
    return _dataset(tmp_path_factory.mktemp("stereo"), "dcase2026")


def _train(data, run, preset, *overrides):
    assert _run("train", "--system", "frozen_encoder", "--data", data, "--out", run,
                "--verbose", 0, "encoder=eat", f"preset={preset}", "layer=1",
                # One batch per transform: one trace of the encoder.
                "pooling=band_mean", "clip_seconds=1.0", "batch_size=32", "jit_compile=false",
                *overrides) == 0


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, presets, mono):
    base = tmp_path_factory.mktemp("cli")
    dev, _ = mono
    run, scores = base / "run", base / "scores"
    _train(dev, run, presets["eat"])
    assert _run("score", "--run", run, "--data", dev, "--out", scores) == 0
    return base, dev, run, scores


def _serve(export, paths, **inputs):
    import tensorflow as tf

    waves = np.stack([soundfile.read(p, dtype="float32")[0] for p in paths])
    inputs = {k: tf.constant(v) for k, v in inputs.items()}
    out = tf.saved_model.load(str(export)).signatures["serving_default"](
        waveform=tf.constant(waves), **inputs)
    return waves, out["anomaly_score"].numpy(), out["decision"].numpy()


def _check_export_against_score(run, dev, scores, export, expected_shape):
    manifest = json.loads((export / "asd_keras_export.json").read_text())
    assert manifest["inputs"] == ["waveform", "machine_type", "section"]
    assert manifest["waveform_shape"] == expected_shape
    table = pd.read_csv(scores / "scores.csv", dtype={"section": str})
    section = table[(table["machine_type"] == "fan") & (table["section"] == "00")]
    assert len(section) == 8
    paths = [str(next(Path(dev).rglob(name))) for name in section["file_name"]]
    waves, served, decisions = _serve(export, paths, machine_type="fan", section="00")
    assert waves.shape[1:] == ((RATE,) if len(expected_shape) == 2 else (RATE, 2))
    assert_close_to_scale(served, section["score"])
    # The scores are not all alike (the check would be empty otherwise).
    assert np.ptp(section["score"].to_numpy()) > 1e-3
    threshold = json.loads((run / "thresholds.json").read_text())["fan_section_00"]
    assert_decisions_match(decisions, section["decision"], section["score"], threshold)


# -- 1. the command-line program end to end ------------------------------------


def test_cli_train_score_evaluate_and_probe(cli_run, embedding_cache, mono):
    base, dev, run, scores = cli_run
    _, table = mono
    config = (run / "config.yaml").read_text()
    for line in ("system: frozen_encoder", "backend: knn", "encoder: eat", "layer: 1",
                 "pooling: band_mean", "grouping: section"):
        assert line in config
    record = json.loads((run / "run.json").read_text())
    assert record["data_choices"]["encoder_weights"] == "pretrained"
    assert (run / "members" / "member0" / "extractors" / "all" / "extractor.json").is_file()
    # The embeddings went to $ASD_KERAS_CACHE/embeddings, one file per clip
    # (train and test) holding every layer.
    extractor = load_extractor(run / "members" / "member0" / "extractors" / "all")
    assert extractor.cache_dir == "auto" and len(table) == 36
    for key in extractor._cache_keys(table["path"]):
        cached = embedding_cache / "embeddings" / key[:2] / f"{key}.npy"
        assert np.load(cached).shape == (3, NUM_BANDS * DIM)  # layers 0-2, band_mean

    produced = pd.read_csv(scores / "scores.csv", dtype={"section": str})
    assert len(produced) == 24 and np.isfinite(produced["score"]).all()
    assert sorted(p.name for p in scores.glob("anomaly_score_*.csv")) == [
        f"anomaly_score_fan_section_0{s}_test.csv" for s in range(3)]

    assert _run("evaluate", "--scores", scores, "--data", dev) == 0
    result = pd.read_csv(scores / "evaluation" / "result.csv", dtype={"section": str})
    aucs = result.loc[result["section"].isin(["00", "01", "02"]), "AUC (source)"]
    assert len(aucs) == 3 and ((aucs >= 0) & (aucs <= 1)).all()

    assert _run("probe", "--run", run, "--data", dev, "--out", base / "probe") == 0
    probe = pd.read_csv(base / "probe" / "probe.csv", dtype={"section": str})
    assert list(probe["machine_type"]) == ["fan"] * 3 + ["mean"]
    assert not list((base / "probe").glob("anomaly_score_*"))


# The SavedModel of a mono run: tests/test_served_parity.py.


# -- 2. features by hand --------------------------------------------------------


def _pool_by_hand(tokens, pooling, extra):
    if pooling == "cls":
        return tokens[:, 0]
    patches = tokens[:, extra:]
    if pooling == "mean":
        return patches.mean(axis=1)
    batch, count, dim = patches.shape
    return patches.reshape(batch, count // NUM_BANDS, NUM_BANDS, dim).mean(axis=1).reshape(
        batch, NUM_BANDS * dim)


@pytest.mark.parametrize("encoder, pooling, layers, dim, batch_size, jit", [
    ("beats", "mean", [0, 1, 2], DIM, 4, False),
    ("eat", "band_mean", [1, 2], NUM_BANDS * DIM, 2, False),  # two batches, 2 + 1 clips
    # XLA (the default with clip_seconds): the last batch is padded, then cut.
    ("eat", "band_mean", [1, 2], NUM_BANDS * DIM, 2, True),
    ("eat", "cls", [2], DIM, 4, False),
])
def test_transform_is_the_pooled_encoder_output(encoder, pooling, layers, dim, batch_size,
                                                jit, presets, mono):
    from asd_keras.models.audio_encoders import load_encoder

    _, table = mono
    rows = table[table["split"] == "test"].head(3)
    # 1.25 s: every clip is zero-padded by a quarter second first.
    extractor = _extractor(encoder=encoder, preset=presets[encoder], layer=layers,
                           pooling=pooling, clip_seconds=1.25, batch_size=batch_size,
                           cache_dir="none", jit_compile=jit)
    features = extractor.transform(rows)
    assert sorted(features) == [f"layer_{i}" for i in sorted(layers)]

    length = int(1.25 * RATE)
    waves = np.zeros((len(rows), length), np.float32)
    for i, path in enumerate(rows["path"]):
        audio = soundfile.read(path, dtype="float32")[0]
        waves[i, :len(audio)] = audio
    model, info = load_encoder(str(presets[encoder]))
    assert info["encoder"] == encoder
    outputs = {k: np.asarray(v) for k, v in model(waves).items()}
    extra = 1 if encoder == "eat" else 0
    for i in layers:
        expected = _pool_by_hand(outputs[f"layer_{i}"], pooling, extra)
        assert features[f"layer_{i}"].shape == (len(rows), dim)
        assert features[f"layer_{i}"].dtype == np.float32
        np.testing.assert_allclose(features[f"layer_{i}"], expected, rtol=1e-5, atol=1e-5)
    # The pooled vectors tell the clips apart.
    last = features[f"layer_{layers[-1]}"]
    assert np.abs(last[0] - last[1]).max() > 1e-3


# -- 3. the embedding cache ------------------------------------------------------


def _copied_clips(mono, folder, count=3):
    _, table = mono
    rows = table[table["split"] == "test"].head(count).copy()
    folder.mkdir()
    copies = []
    for path in rows["path"]:
        copies.append(str(folder / Path(path).name))
        shutil.copy2(path, copies[-1])
    rows["path"] = copies
    return rows.reset_index(drop=True)


def _forbid_encoding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the encoder ran although the cache holds every clip")

    monkeypatch.setattr(FrozenEncoderExtractor, "_encode", fail)


def _spy_on_encoding(monkeypatch):
    calls = []
    original = FrozenEncoderExtractor._encode

    def spy(self, paths, *args, **kwargs):
        calls.append(list(paths))
        return original(self, paths, *args, **kwargs)

    monkeypatch.setattr(FrozenEncoderExtractor, "_encode", spy)
    return calls


def test_cache_serves_another_layer_without_the_encoder(presets, mono, tmp_path, monkeypatch):
    rows = _copied_clips(mono, tmp_path / "clips")
    cache = tmp_path / "cache"
    common = dict(encoder="eat", preset=presets["eat"], pooling="mean", clip_seconds=1.0,
                  cache_dir=str(cache))
    first = _extractor(layer=1, **common).transform(rows)["layer_1"]
    assert len(list(cache.rglob("*.npy"))) == len(rows)

    fresh = _extractor(**{**common, "cache_dir": "none"}, layer=[0, 2]).transform(rows)
    _forbid_encoding(monkeypatch)
    cached = _extractor(layer=[0, 2], **common).transform(rows)
    again = _extractor(layer=1, **common).transform(rows)["layer_1"]
    for name in ("layer_0", "layer_2"):
        np.testing.assert_allclose(cached[name], fresh[name], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(again, first)
    # Each layer is its own: the cache did not hand back the wrong one.
    assert np.abs(cached["layer_2"] - first).max() > 1e-3
    assert np.abs(cached["layer_0"] - cached["layer_2"]).max() > 1e-3
    assert len(list(cache.rglob("*.npy"))) == len(rows)


def test_cache_entries_have_the_documented_size_and_memory_keeps_only_asked_layers(
        presets, mono, tmp_path, monkeypatch):
    """An entry is `128 + 4 * layers * dim` bytes plus a 65-byte checksum;
    encoding keeps nothing but the cache entries and the asked-for layer,
    and reading the cache keeps only that layer of each entry."""
    from asd_keras.extractors.embedding_cache import EmbeddingCache
    from asd_keras.extractors.embedding_cache import cache_size

    rows = _copied_clips(mono, tmp_path / "clips")
    cache = tmp_path / "cache"
    common = dict(encoder="eat", preset=presets["eat"], pooling="mean", clip_seconds=1.0,
                  cache_dir=str(cache), layer=1)
    kept = []
    original_encode = FrozenEncoderExtractor._encode

    def spy_encode(self, *args, **kwargs):
        kept.append(original_encode(self, *args, **kwargs))
        return kept[-1]

    monkeypatch.setattr(FrozenEncoderExtractor, "_encode", spy_encode)
    extractor = _extractor(**common)
    first = extractor.transform(rows)["layer_1"]
    assert kept == [None]  # each batch went to the cache, none was kept whole
    layers = extractor.num_layers + 1
    files = sorted(cache.rglob("*.npy"))
    assert len(files) == len(rows)
    for file in files:
        assert file.stat().st_size == 128 + 4 * layers * DIM
        assert file.with_suffix(".sha256").stat().st_size == 65
    assert cache_size(cache) == (len(rows), len(rows) * (128 + 4 * layers * DIM + 65))
    assert cache_size(tmp_path / "absent") == (0, 0)

    shapes = []
    original_load = EmbeddingCache.load_many

    def spy_load(self, *args, **kwargs):
        loaded = original_load(self, *args, **kwargs)
        shapes.extend(r.shape for r in loaded)
        return loaded

    monkeypatch.setattr(EmbeddingCache, "load_many", spy_load)
    again = _extractor(**common).transform(rows)["layer_1"]
    assert shapes == [(1, DIM)] * len(rows)
    np.testing.assert_array_equal(again, first)


def test_cache_reencodes_only_a_touched_or_rewritten_clip(presets, mono, tmp_path,
                                                          monkeypatch):
    import os

    rows = _copied_clips(mono, tmp_path / "clips")
    extractor = _extractor(encoder="eat", preset=presets["eat"], layer=2, pooling="mean",
                           clip_seconds=1.0, cache_dir=str(tmp_path / "cache"))
    before = extractor.transform(rows)["layer_2"]
    calls = _spy_on_encoding(monkeypatch)

    np.testing.assert_array_equal(extractor.transform(rows)["layer_2"], before)
    assert calls == []

    touched = rows["path"][1]
    stat = os.stat(touched)
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    after_touch = extractor.transform(rows)["layer_2"]
    assert calls == [[touched]]
    np.testing.assert_allclose(after_touch, before, rtol=1e-6, atol=1e-6)  # same audio

    rewritten = rows["path"][2]
    audio = soundfile.read(rewritten, dtype="float32")[0]
    soundfile.write(rewritten, audio[:int(0.75 * RATE)], RATE, subtype="PCM_16")
    after_rewrite = extractor.transform(rows)["layer_2"]
    assert calls == [[touched], [rewritten]]
    np.testing.assert_array_equal(after_rewrite[:2], after_touch[:2])
    assert np.abs(after_rewrite[2] - before[2]).max() > 1e-3
    uncached = _extractor(**{**extractor.get_config(), "cache_dir": "none"})
    np.testing.assert_allclose(after_rewrite, uncached.transform(rows)["layer_2"],
                               rtol=1e-5, atol=1e-5)


def test_no_cache_writes_nothing(presets, mono, tmp_path, monkeypatch):
    rows = _copied_clips(mono, tmp_path / "clips", count=2)
    root = tmp_path / "cache_root"
    monkeypatch.setenv(CACHE_ENV, str(root))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert frozen_module.default_cache_dir() == root / "embeddings"
    common = dict(encoder="beats", preset=presets["beats"], layer=1, clip_seconds=1.0)
    features = _extractor(cache_dir="none", **common).transform(rows)
    assert features["layer_1"].shape == (2, DIM)
    assert not root.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clips"]
    # "auto" does write there: the check above can fail.
    _extractor(cache_dir="auto", **common).transform(rows)
    assert len(list((root / "embeddings").rglob("*.npy"))) == 2


def _entry(extractor, path):
    """The cache entry (array file, checksum file) of one clip."""
    key = extractor._cache_keys([path])[0]
    array = Path(extractor.cache_dir) / key[:2] / f"{key}.npy"
    return array, array.with_suffix(".sha256")


def _rewrite_with_checksum(entry, value):
    """An entry whose checksum matches a wrong array (a cache written by a
    faulty writer): only the contents checks catch it."""
    import hashlib

    array, checksum = entry
    np.save(array, value)
    checksum.write_text(hashlib.sha256(array.read_bytes()).hexdigest() + "\n")


DAMAGES = {
    "overwritten": "does not match its checksum",
    "no_checksum": "has no checksum",
    "wrong_layers": r"holds a float32 array of shape \(2, 32\), not \(3, dim\)",
    "wrong_dim": r"holds an array of shape \(3, 31\), but the encoder gives \(3, 32\)",
    "nan": "holds non-finite values",
}


def _damage(entry, damage, good):
    if damage == "overwritten":
        # The report of issue 28: the last 16 bytes overwritten, same size.
        size = entry[0].stat().st_size
        with open(entry[0], "r+b") as f:
            f.seek(-16, 2)
            f.write(np.full(4, 1e15, np.float32).tobytes())
        assert entry[0].stat().st_size == size
    elif damage == "no_checksum":
        entry[1].unlink()
    elif damage == "wrong_layers":
        _rewrite_with_checksum(entry, good[:2])
    elif damage == "wrong_dim":
        _rewrite_with_checksum(entry, good[:, :-1])
    else:
        _rewrite_with_checksum(entry, np.where(np.arange(DIM) == 3, np.nan, good))


def test_a_damaged_cache_entry_is_named_and_encoded_again(presets, mono, tmp_path,
                                                         monkeypatch, caplog):
    rows = _copied_clips(mono, tmp_path / "clips")
    # One extractor for every kind of damage: its encoder is traced once.
    extractor = _extractor(encoder="eat", preset=presets["eat"], layer=[1, 2],
                           pooling="mean", clip_seconds=1.0, cache_dir=str(tmp_path / "cache"))
    before = extractor.transform(rows)
    calls = _spy_on_encoding(monkeypatch)
    for index, (damage, message) in enumerate(DAMAGES.items()):
        clip = rows["path"][index % len(rows)]
        entry = _entry(extractor, clip)
        good = np.load(entry[0])
        assert good.shape == (3, DIM) and entry[1].is_file()
        _damage(entry, damage, good)
        calls.clear()
        caplog.clear()
        with caplog.at_level("WARNING", logger="asd_keras"):
            after = extractor.transform(rows)
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warned) == 1, (damage, warned)
        assert f"Embedding cache entry '{entry[0]}' (clip '{clip}')" in warned[0]
        assert re.search(message, warned[0]) and "encoding the clip again" in warned[0], damage
        assert calls == [[clip]], damage  # only the damaged clip
        for name in ("layer_1", "layer_2"):
            np.testing.assert_allclose(after[name], before[name], rtol=1e-5, atol=1e-5)
        # The entry was rewritten whole: the next call encodes nothing.
        np.testing.assert_allclose(np.load(entry[0]), good, rtol=1e-5, atol=1e-5)
        caplog.clear()
        extractor.transform(rows)
        assert calls == [[clip]] and not caplog.records, damage


def test_training_on_a_damaged_cache_entry_gives_the_scores_of_a_sound_one(cli_run, mono,
                                                                           tmp_path, capsys):
    """Issue 28: training again over a cache entry with 16 overwritten bytes
    exited 0 with training scores off by up to 1.8e15."""
    _, dev, run, _ = cli_run
    _, table = mono
    extractor = load_extractor(run / "members" / "member0" / "extractors" / "all")
    extractor.cache_dir = str(frozen_module.default_cache_dir())
    clip = table.loc[table["split"] == "train", "path"].iloc[0]
    array, _ = _entry(extractor, clip)
    with open(array, "r+b") as f:
        # The last 16 bytes of layer 1 (the run's layer; layer 2 follows).
        f.seek(-NUM_BANDS * DIM * 4 - 16, 2)
        f.write(np.full(4, 1e15, np.float32).tobytes())
    again = tmp_path / "again"
    capsys.readouterr()
    _train(dev, again, extractor.preset)
    printed = capsys.readouterr().out
    first = pd.read_csv(run / "train_scores.csv")
    second = pd.read_csv(again / "train_scores.csv")
    assert list(first["file_name"]) == list(second["file_name"])
    np.testing.assert_allclose(second["score"], first["score"], rtol=1e-3, atol=1e-4)
    assert f"Embedding cache entry '{array}' (clip '{clip}') does not match its checksum" \
        in printed
    assert "Encoding 1 clips" in printed


# -- 4. two-channel clips ----------------------------------------------------------


def test_both_channels_are_near_then_far(presets, stereo, embedding_cache):
    _, table = stereo
    common = dict(encoder="eat", preset=presets["eat"], layer=[1, 2], pooling="band_mean",
                  clip_seconds=1.0, batch_size=32)
    # Into the module's cache, with the settings of the two-channel run below,
    # whose training and scoring then read it (time); this computes afresh.
    both = _extractor(channel="both", **common)
    assert both.serving_channels == 2
    before = set((embedding_cache / "embeddings").rglob("*.npy"))
    features = both.transform(table)
    assert len(set((embedding_cache / "embeddings").rglob("*.npy")) - before) == len(table)
    near = _extractor(channel=0, cache_dir="none", **common).transform(table)
    far = _extractor(channel=1, cache_dir="none", **common).transform(table)
    # Runs written before the channel values were shared say "near"/"far".
    assert _extractor(channel="far", cache_dir="none", **common).get_config()["channel"] == 1
    with pytest.raises(ValueError, match="channel must be one of \\(0, 1, 'both'\\)"):
        _extractor(channel=2, cache_dir="none", **common)
    width = NUM_BANDS * DIM
    for name in ("layer_1", "layer_2"):
        assert near[name].shape == far[name].shape == (len(table), width)
        assert features[name].shape == (len(table), 2 * width)
        np.testing.assert_allclose(features[name][:, :width], near[name], rtol=1e-5,
                                   atol=1e-5)
        np.testing.assert_allclose(features[name][:, width:], far[name], rtol=1e-5,
                                   atol=1e-5)
        assert np.abs(near[name] - far[name]).max() > 1e-3  # the channels differ


def test_residual_view_two_channel_run_and_export(presets, stereo, tmp_path, capsys):
    """Kim et al.'s Residual View + PRPS preset end to end on two-channel
    clips: train, score, evaluate, export; the SavedModel takes `(clips,
    samples, 2)` waveforms and serves the scores of `score`."""
    dev, table = stereo
    run, scores, export = tmp_path / "run", tmp_path / "scores", tmp_path / "export"
    assert _run("train", "--system", "residual_view", "--data", dev, "--out", run,
                "--verbose", 0, "encoder=eat", f"preset={presets['eat']}", "layer=1",
                "clip_seconds=1.0", "batch_size=32", "jit_compile=false", "alpha=0.5",
                "prps=true", "prototypes=2", "memmixup_neighbours=3") == 0
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text())["params"]
    assert (config["channel"], config["pooling"], config["alpha"], config["prps"]) == (
        "both", "band_mean", 0.5, True)
    backend = json.loads((run / "members" / "member0" / "backends" / "fan_section_00"
                          / "backend.json").read_text())
    assert backend["name"] == "residual_knn"
    with np.load(run / "members" / "member0" / "backends" / "fan_section_00"
                 / "arrays.npz") as arrays:
        # 3 source and 1 target training clips: the target bank holds the
        # target clip and its 3 MemMixup mixtures; 2 prototypes; residuals
        # are one channel wide (8 bands x 32).
        assert arrays["source_bank"].shape == (3, NUM_BANDS * DIM)
        assert arrays["target_bank"].shape == (1 + 3, NUM_BANDS * DIM)
        assert arrays["prototypes_bank"].shape == (2, NUM_BANDS * DIM)
    assert _run("score", "--run", run, "--data", dev, "--out", scores) == 0
    assert _run("evaluate", "--scores", scores, "--data", dev) == 0
    capsys.readouterr()
    assert _run("export", "--run", run, "--out", export) == 0
    assert "waveform [clips, samples, 2 (near, far)] float32" in capsys.readouterr().out
    _check_export_against_score(run, dev, scores, export, [None, None, 2])


def test_far_channel_of_mono_clips_names_the_file(presets, mono):
    _, table = mono
    rows = table.head(2)
    extractor = _extractor(encoder="eat", preset=presets["eat"], channel=1,
                           clip_seconds=1.0, cache_dir="none")
    with pytest.raises(ValueError, match="has 1 channel") as error:
        extractor.transform(rows)
    assert rows["path"].iloc[0] in str(error.value)


# -- 5. errors that name the value ---------------------------------------------------


def test_configuration_errors_name_the_value(presets, tmp_path):
    with pytest.raises(ValueError, match="'wav2vec2'"):
        _extractor(encoder="wav2vec2")
    with pytest.raises(ValueError, match="pooling='cls'.*encoder='beats'"):
        _extractor(encoder="beats", preset=presets["beats"], pooling="cls")
    with pytest.raises(ValueError, match=r"\[0, 2\].*received 3"):
        _extractor(encoder="eat", preset=presets["eat"], layer=3)
    with pytest.raises(ValueError, match=r"\[0, 2\].*received \[1, 5\]"):
        _extractor(encoder="beats", preset=presets["beats"], layer=[1, 5])
    with pytest.raises(ValueError, match="'eat_base' is a eat configuration, not 'beats'"):
        _extractor(encoder="beats", preset="eat_base")
    with pytest.raises(ValueError, match="holds a eat encoder; set encoder=eat"):
        _extractor(encoder="beats", preset=presets["eat"])
    broken = tmp_path / "broken_preset"
    shutil.copytree(presets["eat"], broken)
    (broken / "model.weights.h5").unlink()
    with pytest.raises(FileNotFoundError, match="has no model.weights.h5") as error:
        _extractor(encoder="eat", preset=broken)
    assert str(broken) in str(error.value)


def test_cli_unknown_encoder_exits_with_code_2(mono, tmp_path, capsys):
    dev, _ = mono
    code = _run("train", "--system", "frozen_encoder", "--data", dev, "--out", tmp_path / "run",
                "encoder=wav2vec2")
    assert code == 2
    assert "wav2vec2" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("change", ["weights", "configuration"])
def test_a_changed_preset_is_refused(change, presets, mono, tmp_path, capsys):
    from asd_keras.models.audio_encoders import load_encoder

    dev, _ = mono
    preset, run = tmp_path / "preset", tmp_path / "run"
    shutil.copytree(presets["eat"], preset)
    _train(dev, run, preset)
    folder = run / "members" / "member0" / "extractors" / "all"
    assert load_extractor(folder).preset == str(preset.resolve())  # loads as it is
    if change == "weights":
        # The weights file alone; metadata.json keeps the old hash.
        encoder, _ = load_encoder(str(preset))
        encoder.set_weights([1.5 * w for w in encoder.get_weights()])
        encoder.save_weights(preset / "model.weights.h5")
    else:
        # The same weights with another front end (fewer frames).
        assert _run("convert", "--encoder", "eat", "--checkpoint", presets["eat_checkpoint"],
                    "--out", preset, "--force", "num_frames=64", "num_heads=4") == 0
    with pytest.raises(ValueError, match="changed") as error:
        load_extractor(folder)
    assert str(preset.resolve()) in str(error.value)
    capsys.readouterr()
    assert _run("score", "--run", run, "--data", dev, "--out", tmp_path / "scores") == 2
    assert "has changed since this extractor was fitted" in capsys.readouterr().err
    assert not (tmp_path / "scores").exists()


def test_convert_keeps_an_existing_preset_without_force(presets, tmp_path, capsys):
    out = tmp_path / "preset"
    shutil.copytree(presets["beats"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    code = _run("convert", "--encoder", "beats", "--checkpoint", presets["beats_checkpoint"],
                "--out", out)
    assert code == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--force" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _run("convert", "--encoder", "beats", "--checkpoint", presets["beats_checkpoint"],
                "--out", out, "--force") == 0


# -- 6. named configurations: random weights, built only when used -------------------


def test_named_preset_has_random_weights_and_is_not_built(presets, monkeypatch):
    from asd_keras.models import audio_encoders
    from asd_keras.models import beats_backbone
    from asd_keras.models import eat_backbone

    def refuse(*args, **kwargs):
        raise AssertionError("constructing the extractor built the encoder")

    monkeypatch.setattr(audio_encoders, "build_encoder", refuse)
    monkeypatch.setattr(audio_encoders, "load_encoder", refuse)
    for module in (beats_backbone, eat_backbone):  # every encoder's first layer
        monkeypatch.setattr(module, "KaldiFbank", refuse)

    extractor = _extractor(encoder="eat", preset="eat_base")
    assert extractor.pretrained is False
    assert extractor.data_choices["encoder_weights"] == "random weights"
    assert "eat_base" in extractor.data_choices["preset_source"]
    assert extractor.num_layers == 12 and extractor.feature_names == ["layer_12"]
    assert extractor._encoder is None and extractor._models == {}
    # The seed of the random weights is part of the fingerprint (and so of
    # the cache keys); the named configuration's depth sets the layer range.
    other = _extractor(encoder="eat", preset="eat_base", weights_seed=1)
    assert other.preset_fingerprint != extractor.preset_fingerprint
    assert _extractor(encoder="eat", preset="eat_large").num_layers == 24
    beats = _extractor(encoder="beats")
    assert beats.preset == "beats_iter3" and beats.pretrained is False
    with pytest.raises(ValueError, match=r"\[0, 12\].*received 13"):
        _extractor(encoder="eat", preset="eat_base", layer=13)

    converted = _extractor(encoder="eat", preset=presets["eat"])
    assert converted.pretrained is True
    assert converted.data_choices["encoder_weights"] == "pretrained"


def test_an_interrupted_encoding_keeps_the_finished_batches(presets, mono, tmp_path,
                                                            monkeypatch):
    rows = _copied_clips(mono, tmp_path / "clips", count=5)
    cache = tmp_path / "cache"
    config = dict(encoder="eat", preset=presets["eat"], pooling="mean", clip_seconds=1.0,
                  cache_dir=str(cache), batch_size=2, layer=1)
    original = FrozenEncoderExtractor._encode

    def interrupted(self, paths, loader, layers, verbose, on_batch=None):
        def stop_after_two(start, values):
            on_batch(start, values)
            if start + len(values) >= 4:
                raise KeyboardInterrupt  # Ctrl-C after the second batch

        return original(self, paths, loader, layers, verbose, stop_after_two)

    monkeypatch.setattr(FrozenEncoderExtractor, "_encode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _extractor(**config).transform(rows)
    assert len(list(cache.rglob("*.npy"))) == 4  # two batches of two
    monkeypatch.undo()
    calls = _spy_on_encoding(monkeypatch)
    resumed = _extractor(**config).transform(rows)["layer_1"]
    assert calls == [[rows["path"].iloc[4]]]  # only the clip not yet encoded
    fresh = _extractor(**{**config, "cache_dir": "none"}).transform(rows)["layer_1"]
    # Batches of other sizes: CPU kernels may differ in the last bits.
    np.testing.assert_allclose(resumed, fresh, rtol=1e-5, atol=1e-5)
