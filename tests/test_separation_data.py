"""SI-SDR, the separation mixtures and the segment layers, checked by hand."""

import keras
import numpy as np
import pandas as pd
import pytest
import soundfile

from asd_keras.data.audio import AudioLoader
from asd_keras.data.mixtures import evaluation_manifest
from asd_keras.data.mixtures import manifest_dataset
from asd_keras.data.mixtures import mix_at_snr
from asd_keras.data.mixtures import snr_db
from asd_keras.data.mixtures import training_mixtures
from asd_keras.data.mixtures import write_manifest
from asd_keras.layers.segments import MergeSegments
from asd_keras.layers.segments import PooledFeatureMaps
from asd_keras.layers.segments import SplitSegments
from asd_keras.losses.separation import NegativeSISDR
from asd_keras.losses.separation import si_sdr
from tests.helpers import roundtrip_and_save as _roundtrip_and_save

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------
# SI-SDR
# ----------------------------------------------------------------------


def test_si_sdr_reference_value():
    # torchmetrics' doctest value (reference/methods.md §E).
    value = si_sdr(np.array([3.0, -0.5, 2.0, 7.0], np.float32),
                   np.array([2.5, 0.0, 2.0, 8.0], np.float32))
    assert float(value) == pytest.approx(18.4030, abs=1e-3)


def test_si_sdr_by_hand_without_eps_and_its_invariances():
    s = RNG.normal(size=(3, 800)).astype(np.float32)
    e = (s + 0.3 * RNG.normal(size=s.shape)).astype(np.float32)
    alpha = (e * s).sum(-1, keepdims=True) / (s * s).sum(-1, keepdims=True)
    expected = 10 * np.log10(((alpha * s) ** 2).sum(-1) / ((alpha * s - e) ** 2).sum(-1))
    got = np.asarray(si_sdr(s, e, eps=0.0))
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    # Scale invariant in the estimate; zero_mean ignores offsets.
    np.testing.assert_allclose(np.asarray(si_sdr(s, 7.5 * e)), got, rtol=1e-4)
    shifted = np.asarray(si_sdr(s + 1.0, e + 3.0, zero_mean=True))
    np.testing.assert_allclose(shifted, np.asarray(si_sdr(s - s.mean(-1, keepdims=True),
                                                          e - e.mean(-1, keepdims=True))),
                               rtol=1e-4)


def test_negative_si_sdr_loss_class(tmp_path):
    s = RNG.normal(size=(4, 400)).astype(np.float32)
    e = (s + 0.5 * RNG.normal(size=s.shape)).astype(np.float32)
    loss = NegativeSISDR()
    assert float(loss(s, e)) == pytest.approx(-float(np.mean(np.asarray(si_sdr(s, e)))),
                                              rel=1e-5)
    clone = NegativeSISDR.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    # Inside a compiled model: training raises the SI-SDR; save and load.
    inputs = keras.Input((400,))
    model = keras.Model(inputs, keras.layers.Dense(400, use_bias=False)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=NegativeSISDR(zero_mean=True))
    history = model.fit(e, s, epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.loss.zero_mean is True
    with pytest.raises(ValueError, match="eps must be a number >= 0; received -1"):
        NegativeSISDR(eps=-1)


# ----------------------------------------------------------------------
# Mixtures
# ----------------------------------------------------------------------


@pytest.mark.parametrize("snr", [-5.0, 0.0, 5.0, 12.5])
def test_mix_at_snr_gives_the_requested_snr(snr):
    t = RNG.normal(size=(2, 16000)).astype(np.float32)
    i = (3.0 * RNG.normal(size=(2, 16000))).astype(np.float32)
    mixture, gain = mix_at_snr(t, i, snr)
    measured = snr_db(t, np.asarray(mixture) - t)
    np.testing.assert_allclose(measured, snr, atol=0.01)
    np.testing.assert_allclose(np.asarray(mixture), t + np.asarray(gain) * i, rtol=1e-6)


def _clips(root, kinds=("fan", "valve", "pump"), per_kind=3, seconds=0.5, sr=16000):
    rows = []
    for k, kind in enumerate(kinds):
        for j in range(per_kind):
            path = root / f"{kind}_{j}.wav"
            # Each clip is a constant tone of its own frequency, so a segment
            # tells which clip (and which offset) it came from.
            n = int(seconds * sr)
            freq = 200 + 100 * (3 * k + j)
            soundfile.write(path, (0.3 * np.sin(2 * np.pi * freq * np.arange(n) / sr))
                            .astype(np.float32), sr, subtype="PCM_16")
            rows.append({"path": str(path), "machine_type": kind})
    return pd.DataFrame(rows)


def test_training_mixtures_are_deterministic_and_use_other_types(tmp_path):
    table = _clips(tmp_path)
    loader = AudioLoader(length=8000, length_policy="truncate")
    loader.check(table["path"], progress=False)
    targets = table[table["machine_type"] == "fan"]
    stream = training_mixtures(targets, table, loader, 4000, (-5, 5), seed=3)
    first = list(stream.take(9).as_numpy_iterator())
    again = list(training_mixtures(targets, table, loader, 4000, (-5, 5), seed=3)
                 .take(9).as_numpy_iterator())
    for (m1, t1), (m2, t2) in zip(first, again):
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(t1, t2)
    other = list(training_mixtures(targets, table, loader, 4000, (-5, 5), seed=4)
                 .take(3).as_numpy_iterator())
    assert not np.allclose(other[0][0], first[0][0])
    fan = [np.asarray(loader.load(p)) for p in targets["path"]]
    snrs = []
    for epoch in range(3):  # each epoch visits every target clip once
        seen = []
        for mixture, target in first[3 * epoch:3 * epoch + 3]:
            assert mixture.shape == target.shape == (4000,)
            matches = [j for j, clip in enumerate(fan)
                       if any(np.allclose(target, clip[o:o + 4000], atol=1e-6)
                              for o in np.flatnonzero(np.abs(clip[:4001] - target[0]) < 1e-6))]
            assert len(matches) == 1
            seen.append(matches[0])
            residual = mixture - target
            snrs.append(snr_db(target, residual))
            # The interferer is not a fan clip: its residual is no scaled fan segment.
            assert not any(abs(np.corrcoef(residual, clip[:4000])[0, 1]) > 0.99
                           for clip in fan)
        assert sorted(seen) == [0, 1, 2]
    assert all(-5.01 <= s <= 5.01 for s in snrs)
    assert np.std(snrs) > 0.5


def test_no_other_machine_type_is_an_error(tmp_path):
    table = _clips(tmp_path, kinds=("fan",))
    loader = AudioLoader(length=8000, length_policy="truncate")
    with pytest.raises(ValueError, match="No interferer for the machine type 'fan'"):
        training_mixtures(table, table, loader, 4000)
    with pytest.raises(ValueError, match="segment_samples=9000 is longer than the clips' 8000"):
        training_mixtures(table, table, loader, 9000)


def test_evaluation_manifest_written_once_and_rendered(tmp_path):
    table = _clips(tmp_path)
    targets = table[table["machine_type"] == "fan"]
    manifest = evaluation_manifest(targets, table, 8000, 4000, count=10, seed=1)
    assert len(manifest) == 30
    assert manifest.groupby("snr_db").size().to_dict() == {-5.0: 10, 0.0: 10, 5.0: 10}
    assert (manifest["interferer_machine_type"] != "fan").all()
    assert (manifest["target_machine_type"] == "fan").all()
    # Each SNR's targets cycle through the clips: used 3 or 4 times of 10.
    counts = manifest[manifest["snr_db"] == 0.0]["target"].value_counts()
    assert set(counts) <= {3, 4} and len(counts) == 3
    assert manifest.equals(evaluation_manifest(targets, table, 8000, 4000, count=10, seed=1))
    path = tmp_path / "mixtures" / "fan.csv"
    write_manifest(path, manifest)
    stored = write_manifest(path, manifest)  # the same draws: accepted
    assert len(stored) == 30
    changed = evaluation_manifest(targets, table, 8000, 4000, count=10, seed=2)
    with pytest.raises(ValueError, match="fan.csv' holds other evaluation mixtures"):
        write_manifest(path, changed)
    loader = AudioLoader(length=8000, length_policy="truncate")
    loader.check(table["path"], progress=False)
    pairs = list(manifest_dataset(manifest, loader, 4000).as_numpy_iterator())
    assert len(pairs) == 30
    for (mixture, target), row in zip(pairs, manifest.itertuples()):
        clip = np.asarray(loader.load(row.target))
        np.testing.assert_allclose(target, clip[row.target_offset:row.target_offset + 4000])
        assert snr_db(target, mixture - target) == pytest.approx(row.snr_db, abs=0.01)


# ----------------------------------------------------------------------
# Segment layers
# ----------------------------------------------------------------------


def test_split_and_merge_segments(tmp_path):
    x = np.arange(2 * 10, dtype=np.float32).reshape(2, 10)
    split = _roundtrip_and_save(SplitSegments(3, name="split"), x, tmp_path)
    np.testing.assert_array_equal(split, [[0, 1, 2], [3, 4, 5], [6, 7, 8],
                                          [10, 11, 12], [13, 14, 15], [16, 17, 18]])
    merged = _roundtrip_and_save(MergeSegments(3, name="merge"), split, tmp_path)
    np.testing.assert_allclose(merged, [[3, 4, 5], [13, 14, 15]])
    maxed = _roundtrip_and_save(MergeSegments(3, "max", name="max"), split, tmp_path)
    np.testing.assert_allclose(maxed, [[6, 7, 8], [16, 17, 18]])
    with pytest.raises(ValueError, match="aggregation must be one of .*received 'median'"):
        MergeSegments(2, "median")
    with pytest.raises(ValueError, match="segment_length must be >= 1; received 0"):
        SplitSegments(0)


@pytest.mark.parametrize("pooling, dim", [("frequency", 5 + 5), ("channel", 4 + 4),
                                          ("frequency_mean", 5)])
def test_pooled_feature_maps_by_hand(pooling, dim, tmp_path):
    a = RNG.normal(size=(2, 3, 5, 4)).astype(np.float32)
    b = RNG.normal(size=(2, 3, 5, 4)).astype(np.float32)
    layer = PooledFeatureMaps(pooling, name=f"pool_{pooling}")
    clone = PooledFeatureMaps.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    inputs = [keras.Input((3, 5, 4)), keras.Input((3, 5, 4))]
    model = keras.Model(inputs, layer(inputs))
    out = np.asarray(model([a, b]))
    assert out.shape == (2, dim)
    if pooling == "frequency":
        expected = np.concatenate([a.mean(axis=(1, 3)), b.mean(axis=(1, 3))], -1)
    elif pooling == "channel":
        expected = np.concatenate([a.mean(axis=(1, 2)), b.mean(axis=(1, 2))], -1)
    else:
        expected = (a.mean(axis=(1, 3)) + b.mean(axis=(1, 3))) / 2
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "pool.keras")
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(tmp_path / "pool.keras")(
        [a, b])), out, rtol=1e-5, atol=1e-6)
