"""Two-channel (DCASE 2026 near/far) clips in the logmel_stats and
classifier_embedding extractors: `channel="both"` gives `[near | far]`."""

import json

import keras
import numpy as np
import pandas as pd
import pytest
import soundfile

from asd_keras.extractors import load_extractor
from asd_keras.extractors.classifier_embedding import ClassifierEmbeddingExtractor
from asd_keras.extractors.logmel_stats import LogMelStatsExtractor
from asd_keras.utils.training import TrainingContext

SR = 16000
SECONDS = 0.75


def _table(paths, sections):
    return pd.DataFrame({
        "path": [str(p) for p in paths],
        "file_name": [p.name for p in paths],
        "machine_type": "fan",
        "section": sections,
        "domain": "source",
        "split": "train",
        "attribute_string": "",
        "label": "normal",
    })


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Four stereo 0.75 s clips (near: a tone and noise, far: other noise
    and a quieter, different tone) in two sections, and one mono clip."""
    folder = tmp_path_factory.mktemp("two_channel")
    rng = np.random.default_rng(0)
    t = np.arange(int(SR * SECONDS)) / SR
    paths = []
    for i in range(4):
        near = 0.4 * np.sin(2 * np.pi * (300 + 200 * i) * t) + 0.05 * rng.standard_normal(t.size)
        far = 0.2 * rng.standard_normal(t.size) + 0.05 * np.sin(2 * np.pi * 3000 * t)
        path = folder / f"section_0{i % 2}_clip_{i}.wav"
        soundfile.write(path, np.clip(np.stack([near, far], 1), -1, 1), SR, subtype="PCM_16")
        paths.append(path)
    mono = folder / "mono.wav"
    soundfile.write(mono, 0.1 * rng.standard_normal(t.size), SR, subtype="PCM_16")
    # What the loader decodes: the 16-bit values.
    waves = np.stack([soundfile.read(p, dtype="float32")[0] for p in paths])
    return {"table": _table(paths, ["00", "01", "00", "01"]), "waves": waves, "mono": mono}


# ----------------------------------------------------------------------
# logmel_stats
# ----------------------------------------------------------------------


def test_logmel_stats_both_channels_are_near_then_far(clips):
    table, waves = clips["table"], clips["waves"]
    both = LogMelStatsExtractor(n_mels=32, channel="both")
    assert both.serving_channels == 2 and both.dim == 2 * 64
    values = both.transform(table)["logmel_stats"]
    assert values.shape == (len(table), 2 * 64) and values.dtype == np.float32
    near = LogMelStatsExtractor(n_mels=32).transform(table)["logmel_stats"]
    far = LogMelStatsExtractor(n_mels=32, channel=1).transform(table)["logmel_stats"]
    assert LogMelStatsExtractor(n_mels=32, channel=1).serving_channels == 1
    np.testing.assert_allclose(values[:, :64], near, atol=1e-5)
    np.testing.assert_allclose(values[:, 64:], far, atol=1e-5)
    assert np.abs(near - far).max() > 1e-2  # the channels differ

    served = both.serving_model()(keras.ops.convert_to_tensor(waves))["logmel_stats"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(served), values, atol=1e-4)
    fixed = both.serving_model(waves.shape[1])
    assert fixed.input_shape == (None, waves.shape[1], 2)

    config = both.get_config()
    assert config["channel"] == "both"
    again = LogMelStatsExtractor(**config)
    assert again.get_config() == config and again.dim == both.dim
    empty = both.transform(table.iloc[:0])["logmel_stats"]
    assert empty.shape == (0, 128)


def test_logmel_stats_channel_errors(clips):
    mono = pd.DataFrame({"path": [str(clips["mono"])]})
    for channel in ("both", 1):
        with pytest.raises(ValueError, match="has 1 channel") as error:
            LogMelStatsExtractor(n_mels=16, channel=channel).transform(mono)
        assert "mono.wav" in str(error.value)
    for bad in (2, "far", True, None):
        with pytest.raises(ValueError, match="channel must be one of") as error:
            LogMelStatsExtractor(channel=bad)
        assert repr(bad) in str(error.value)


# ----------------------------------------------------------------------
# classifier_embedding
# ----------------------------------------------------------------------

# The smallest network that trains: the spectrum branch only, 0.6 s (the
# spectrogram branch's 16 frames need 0.54 s even when unused).
TINY = dict(epochs=1, embedding_dim=8, batch_size=2, clip_seconds=0.6,
            length_policy="truncate", branches="spectrum", classes="section",
            num_subclusters=2, score_batch_clips=4, jit_compile=False)


def test_classifier_embedding_both_channels(clips, tmp_path):
    table, waves = clips["table"], clips["waves"]
    extractor = ClassifierEmbeddingExtractor(channel="both", **TINY)
    assert extractor.serving_channels == 2
    # Training, monitoring and explaining see the near channel alone.
    assert extractor.loader().channel == 0
    assert extractor.loader(training=True).channel == 0
    extractor.fit(table, TrainingContext(verbose=0), name="two_channel")
    values = extractor.transform(table)["embedding"]
    dim = extractor.model.output_shape[-1]
    assert dim == 8 and values.shape == (len(table), 2 * dim)

    # Each half is that channel's embedding by the same network.
    n = extractor.num_samples
    near = extractor.model.predict(waves[:, :n, 0], verbose=0)
    far = extractor.model.predict(waves[:, :n, 1], verbose=0)
    np.testing.assert_allclose(values[:, :dim], near, atol=1e-5)
    np.testing.assert_allclose(values[:, dim:], far, atol=1e-5)
    assert np.abs(near - far).max() > 1e-4
    single = ClassifierEmbeddingExtractor(channel=1, **TINY)
    single.model, single.encoder = extractor.model, extractor.encoder
    np.testing.assert_allclose(single.transform(table)["embedding"], far, atol=1e-5)

    # The serving model takes (batch, samples, 2) of any length.
    serving = extractor.serving_model()
    assert serving.input_shape == (None, None, 2)
    served = serving(keras.ops.convert_to_tensor(waves), training=False)["embedding"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(served), values, atol=1e-4)
    with pytest.raises(ValueError, match="channel='both'"):
        extractor.spectrogram_functions()
    assert extractor.transform(table.iloc[:0])["embedding"].shape == (0, 2 * dim)

    # Saved and loaded: the channel and the values survive.
    extractor.save(tmp_path / "extractor")
    loaded = load_extractor(tmp_path / "extractor")
    assert loaded.get_config()["channel"] == "both" and loaded.serving_channels == 2
    np.testing.assert_allclose(loaded.transform(table)["embedding"], values, atol=1e-5)
    # An extractor.json of channel 0 (the runs saved before "both") loads
    # as before: one channel, the near embeddings.
    record = json.loads((tmp_path / "extractor" / "extractor.json").read_text())
    record["config"]["channel"] = 0
    (tmp_path / "extractor" / "extractor.json").write_text(json.dumps(record))
    old = load_extractor(tmp_path / "extractor")
    assert old.serving_channels == 1 and old.serving_model().input_shape == (None, None)
    np.testing.assert_allclose(old.transform(table)["embedding"], near, atol=1e-5)

    # A mono clip: named before any training, and in transform.
    mono = _table([clips["mono"]], ["00"])
    with pytest.raises(ValueError, match="has 1 channel") as error:
        ClassifierEmbeddingExtractor(channel="both", **TINY).fit(
            pd.concat([table, mono], ignore_index=True), TrainingContext(verbose=0))
    assert "mono.wav" in str(error.value)
    with pytest.raises(ValueError, match="has 1 channel") as error:
        extractor.transform(mono)
    assert "mono.wav" in str(error.value)


def test_classifier_embedding_channel_values():
    assert ClassifierEmbeddingExtractor().get_config()["channel"] == 0
    assert ClassifierEmbeddingExtractor().serving_channels == 1
    with pytest.raises(ValueError, match="channel"):
        ClassifierEmbeddingExtractor(channel=2)
    with pytest.raises(ValueError, match="channel"):
        ClassifierEmbeddingExtractor(channel="far")
