"""The Wilkinghoff network, class labels, the reference-table backends, their
layers and the `wilkinghoff` preset."""

import json

import keras
import numpy as np
import pandas as pd
import pytest
import yaml

from asd_keras.data.labels import ClassEncoder
from asd_keras.data.labels import class_keys
from asd_keras.data.layouts import read_dataset
from asd_keras.evaluation.compactness import compactness_statistics
from asd_keras.backends import load_backend
from asd_keras.backends.kmeans import KMeansBackend
from asd_keras.backends.kmeans import LocalDensityBackend
from asd_keras.backends.kmeans import length_normalize
from asd_keras.extractors.classifier_embedding import ClassifierEmbeddingExtractor
from asd_keras.layers import CosineReferenceScore
from asd_keras.layers import FixedLength
from asd_keras.models.wilkinghoff import wilkinghoff_embedding_model
from asd_keras.systems import get_system
from tests.helpers import assert_close_to_scale
from tests.helpers import serve_saved_model

WilkinghoffSystem = get_system("wilkinghoff")

RNG = np.random.default_rng(1)


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# ----------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------


def test_parameter_counts_match_the_reference():
    # reference wilkinghoff.md §3 "Parameter count".
    for samples, expected in ((160000, 2540978), (288000, 2672050)):
        model = wilkinghoff_embedding_model(samples)
        assert _trainable(model) == expected
        assert model.output_shape == (None, 256)
        non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
        assert non_trainable == 7842
    spectrum = model.get_layer("spectrum_encoder")
    assert spectrum.get_layer("emb_fft").output.shape[-1] == 128
    spectrogram = model.get_layer("spectrogram_encoder")
    assert spectrogram.get_layer("block5b_add").output.shape[1:] == (18, 16, 128)
    assert all(not getattr(layer, "use_bias", False) for layer in spectrum.layers)


def test_block2_bn_options_differ_only_in_placement():
    fixed = wilkinghoff_embedding_model(16000, block2_bn="residual")
    published = wilkinghoff_embedding_model(16000, block2_bn="shortcut")
    assert _trainable(fixed) == _trainable(published)

    def bn_input(model):
        layer = model.get_layer("spectrogram_encoder").get_layer("block2a_bn")
        return layer.input.name if hasattr(layer.input, "name") else str(layer.input)

    assert bn_input(fixed) != bn_input(published)
    spectrogram_only = wilkinghoff_embedding_model(16000, branches="spectrogram")
    assert spectrogram_only.output_shape == (None, 128)
    with pytest.raises(ValueError, match="at least 16"):
        wilkinghoff_embedding_model(4000)


# ----------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------


def _label_table():
    return pd.DataFrame({
        "machine_type": ["fan", "fan", "fan", "slider", "slider"],
        "section": ["00", "00", "01", "00", "00"],
        "domain": ["source", "target", "source", "source", "target"],
        "attribute_string": ["spd_1", "spd_1", "spd_2", "noAttribute", "noAttribute"],
        "split": ["train"] * 5,
        "file_name": [f"f{i}.wav" for i in range(5)],
    })


def test_class_granularities():
    table = _label_table()
    assert class_keys(table, "one").nunique() == 1
    assert class_keys(table, "machine_type").nunique() == 2
    assert class_keys(table, "section").tolist() == ["fan_00", "fan_00", "fan_01",
                                                      "slider_00", "slider_00"]
    keys = class_keys(table, "attribute")
    assert keys.iloc[0] == "fan_00###spd_1###source"
    assert keys.nunique() == 5  # the domain flag splits source and target
    assert class_keys(table, "attribute", domain_flag=False).nunique() == 3
    encoder = ClassEncoder("attribute").fit(table)
    assert encoder.num_classes == 5
    again = ClassEncoder.from_config(json.loads(json.dumps(encoder.get_config())))
    np.testing.assert_array_equal(again.transform(table), encoder.transform(table))
    with pytest.raises(ValueError, match="not seen in training"):
        ClassEncoder("section").fit(table.iloc[:2]).transform(table)
    with pytest.raises(ValueError, match="classes must be one of"):
        class_keys(table, "attributes")


def test_labels_on_every_layout(synthetic_sets):
    for layout, paths in synthetic_sets.items():
        table = read_dataset(paths["dev"])
        train = table[table["split"] == "train"]
        sections = class_keys(train, "section").nunique()
        assert sections == train.groupby(["machine_type", "section"]).ngroups
        if layout == "dcase2020":
            with pytest.raises(ValueError, match="attribute strings"):
                class_keys(train, "attribute")
        else:
            assert class_keys(train, "attribute").nunique() > sections


# ----------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------


def _embedding_data():
    domains = np.array(["source"] * 26 + ["target"] * 4)
    embeddings = RNG.normal(size=(30, 8))
    return embeddings, pd.DataFrame({"domain": domains}), domains


def test_kmeans_backend_by_hand(tmp_path):
    from sklearn.cluster import KMeans

    embeddings, metadata, domains = _embedding_data()
    backend = KMeansBackend(kmeans_clusters=4, seed=0).fit(embeddings, metadata)
    test = RNG.normal(size=(5, 8))
    scores = backend.score(test)
    normed = length_normalize(embeddings)
    centres = KMeans(4, n_init=10, random_state=0).fit(
        normed[domains == "source"]).cluster_centers_
    targets = normed[domains == "target"]
    x = length_normalize(test)
    # Minimum over both domains of the negative cosine similarity; the
    # centroids are not re-normalised (reference wilkinghoff.md 6).
    expected = np.minimum(-(x @ centres.T).max(axis=1), -(x @ targets.T).max(axis=1))
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    cosine = KMeansBackend(kmeans_clusters=4, distance="cosine").fit(embeddings, metadata)
    np.testing.assert_allclose(cosine.score(test), 1 + scores, rtol=1e-5)
    everything = KMeansBackend(kmeans_clusters=4, kmeans_domains="all").fit(
        embeddings, metadata)
    assert len(everything.arrays["alpha"]) == 4 + 4
    backend.save(tmp_path / "b")
    np.testing.assert_allclose(load_backend(tmp_path / "b").score(test), scores, rtol=1e-6)
    with pytest.raises(ValueError, match="metadata columns"):
        KMeansBackend().fit(embeddings, pd.DataFrame({"section": ["00"] * 30}))
    with pytest.raises(ValueError, match="kmeans_domains must be one of"):
        KMeansBackend(kmeans_domains="target")


def test_local_density_backend_by_hand():
    embeddings, metadata, _ = _embedding_data()
    backend = LocalDensityBackend(density_k=2).fit(embeddings, metadata)
    test = RNG.normal(size=(3, 8))
    refs = length_normalize(embeddings)
    distance = 0.5 * (1 - refs @ refs.T)
    np.fill_diagonal(distance, np.inf)
    density = np.sort(distance, axis=1)[:, :2].mean(axis=1)
    x = length_normalize(test)
    expected = (0.5 * (1 - x @ refs.T) / density).min(axis=1)
    np.testing.assert_allclose(backend.score(test), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="at least 2 references"):
        LocalDensityBackend().fit(embeddings[:1], metadata[:1])


def test_cosine_reference_score_layer(tmp_path):
    layer = CosineReferenceScore(3, 2)
    layer.build((None, 2))
    refs = np.array([[1.0, 0.0], [0.0, 2.0], [0.6, 0.8]], "float32")
    layer.references.assign(refs)
    layer.alpha.assign(np.array([0.0, 1.0, 0.5], "float32"))
    layer.beta.assign(np.array([1.0, 1.0, 2.0], "float32"))
    x = np.array([[3.0, 4.0], [0.0, -1.0]], "float32")
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    expected = (np.array([0.0, 1.0, 0.5]) - np.array([1.0, 1.0, 2.0])
                * (unit @ refs.T)).min(axis=1)
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (2,)
    # Float32 against float64: values of order 1, so an absolute floor.
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    clone = CosineReferenceScore.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    inputs = keras.Input((2,))
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(restored.predict(x, verbose=0), expected, rtol=1e-6,
                               atol=1e-6)
    with pytest.raises(ValueError, match="num_references"):
        CosineReferenceScore(0, 2)


def test_cosine_reference_score_of_close_embeddings_does_not_depend_on_the_batch():
    """Local density (alpha = beta = 0.5 / rho) on unit embeddings that lie
    close together, as after a short training: cosine distances and
    densities of about 1e-5. Written as alpha - beta <x, r>, float32 kept
    only the dot product's rounding (0.9 % score changes with oneDNN off)."""
    rng = np.random.default_rng(0)
    centre = rng.standard_normal(64)
    points = centre + 4e-3 * rng.standard_normal((40, 64))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    refs, test = points[:16], points[16:]
    distance = 0.5 * (1.0 - refs @ refs.T)
    np.fill_diagonal(distance, np.inf)
    rho = distance.min(axis=1)
    layer = CosineReferenceScore(16, 64)
    layer.build((None, 64))
    layer.references.assign(refs.astype("float32"))
    layer.alpha.assign((0.5 / rho).astype("float32"))
    layer.beta.assign((0.5 / rho).astype("float32"))
    expected = ((0.5 / rho) * (1.0 - test @ refs.T)).min(axis=1)
    for batch in (24, 3, 1):
        got = np.concatenate([keras.ops.convert_to_numpy(layer(test[i:i + batch].astype(
            "float32"))) for i in range(0, len(test), batch)])
        np.testing.assert_allclose(got, expected, rtol=1e-3, err_msg=f"batch {batch}")


def test_fixed_length_layer(tmp_path):
    wave = np.arange(1, 11, dtype="float32").reshape(2, 5)
    for policy, n, expected in (
            ("truncate", 3, wave[:, :3]),
            ("pad", 7, np.pad(wave, [[0, 0], [0, 2]])),
            ("tile_crop", 12, np.tile(wave, [1, 3])[:, :12])):
        layer = FixedLength(n, policy)
        out = keras.ops.convert_to_numpy(layer(wave))
        assert out.shape == (2, n)
        np.testing.assert_array_equal(out, expected)  # copies only, no arithmetic
        assert FixedLength.from_config(layer.get_config()).get_config() == layer.get_config()
    inputs = keras.Input((None,))
    model = keras.Model(inputs, FixedLength(12, "tile_crop")(inputs))
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(restored.predict(wave, verbose=0),
                                  np.tile(wave, [1, 3])[:, :12])
    with pytest.raises(ValueError, match="policy must be one of"):
        FixedLength(3, "loop")


def test_compactness_statistics_by_hand():
    centres = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    embeddings = np.array([[2.0, 0.0], [1.0, 1.0]])
    intra, inter = compactness_statistics(embeddings, [0, 1], centres)
    second = 2 - 2 * np.sqrt(0.5)
    assert intra == pytest.approx((0.0 + second) / 2)
    assert inter == pytest.approx((2.0 + second) / 2)


# ----------------------------------------------------------------------
# System, CLI and export
# ----------------------------------------------------------------------

TINY = {"epochs": 1, "clip_seconds": 1.0, "batch_size": 8, "monitor_clips": 16,
        "kmeans_clusters": 4}
# The spectrum branch alone trains about 5x faster than both branches; the
# tests whose subject is not the network use it (the spectrogram branch is
# trained and exported by the RISE test; both are pinned by the regression
# case `wilkinghoff_kmeans`).
FAST = dict(TINY, branches="spectrum")


def test_system_variants_train_and_score(synthetic_sets, tmp_path):
    table = read_dataset(synthetic_sets["dcase2023"]["dev"], machine_types=["fan"])
    config = dict(FAST, classes="per_section", loss="compactness", ensemble_size=2,
                  backend="local_density", density_k=2, mixup_in="pipeline",
                  monitor_compactness=True)
    system = WilkinghoffSystem(config)
    # classes=per_section means one network per section.
    assert system.config["extractor_grouping"] == "section"
    with pytest.raises(ValueError, match="needs extractor_grouping='section'"):
        WilkinghoffSystem(dict(config, extractor_grouping="all"))
    system.fit(table, tmp_path / "run", verbose=0)
    assert len(system.members) == 2
    assert set(system.members[0].extractors) == {"fan_section_00"}
    scores = system.score(table)
    assert np.isfinite(scores["score"]).all()
    history = pd.read_csv(tmp_path / "run" / "history" / "member0_fan_section_00.csv")
    assert {"loss", "intra_compactness"} <= set(history.columns)
    assert history["epoch"].tolist() == [0, 1]
    # The ensemble score is the sum of the members' scores.
    fan = scores[scores["machine_type"] == "fan"]
    single = [m.backends["fan_section_00"].score(
        m.extractors["fan_section_00"].transform(fan)["embedding"])
        for m in system.members]
    np.testing.assert_allclose(fan["score"], single[0] + single[1], rtol=1e-6)
    # The export runs the section's network of each member and sums them.
    import soundfile
    import tensorflow as tf

    system.export(tmp_path / "export")
    served = tf.saved_model.load(str(tmp_path / "export"))
    waves = np.stack([soundfile.read(p, dtype="float32")[0] for p in fan["path"]])
    out = served.serve(tf.constant(waves), tf.constant("fan"), tf.constant("00"))
    # To the scores' scale: oneDNN on Intel CPUs rounds the SavedModel's
    # graph differently (3e-5 on scores of 0.8).
    assert_close_to_scale(out["anomaly_score"].numpy(), fan["score"])
    with pytest.raises(ValueError, match="loss must be one of"):
        WilkinghoffSystem({"loss": "cosface"})
    with pytest.raises(ValueError, match="variant must be one of"):
        WilkinghoffSystem({"variant": "dcase2030"})
    # A variant's keys are defaults; the user's own keys win.
    dcase2023 = WilkinghoffSystem({"variant": "dcase2023", "mixup_probability": 0.2})
    assert (dcase2023.config["clip_seconds"], dcase2023.config["mixup_probability"]) == (
        18.0, 0.2)
    assert WilkinghoffSystem({"variant": "icassp2023"}).config["kmeans_domains"] == "all"


def test_cli_train_score_evaluate_export(synthetic_sets, tmp_path):
    from asd_keras import cli

    dev = str(synthetic_sets["dcase2022"]["dev"])
    eval_ = str(synthetic_sets["dcase2022"]["eval"])
    run = tmp_path / "run"
    overrides = [f"{k}={v}" for k, v in FAST.items()]
    # Dev and eval training folders train one model together; overrides may
    # follow --data directly.
    assert cli.main(["train", "--system", "wilkinghoff", "--data", dev, eval_, *overrides,
                     "--out", str(run), "--verbose", "0"]) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["seed"] == 1234
    assert len(json.loads((run / "thresholds.json").read_text())) == 12  # 2 types x 6 sections
    assert cli.main(["train", "--system", "wilkinghoff", "--data", dev,
                     "--out", str(run), *overrides]) == 2  # no --force
    scores_dir = tmp_path / "scores"
    assert cli.main(["score", "--run", str(run), "--data", dev,
                     "--out", str(scores_dir)]) == 0
    scores = pd.read_csv(scores_dir / "scores.csv", dtype={"section": str})
    assert {"score", "decision"} <= set(scores.columns)
    assert cli.main(["evaluate", "--scores", str(scores_dir), "--data", dev]) == 0
    assert (scores_dir / "evaluation" / "official_score.json").is_file()
    # The representation probe on the embeddings: LP and global MD per section.
    assert cli.main(["probe", "--run", str(run), "--data", dev,
                     "--out", str(tmp_path / "probe")]) == 0
    probe = pd.read_csv(tmp_path / "probe" / "probe.csv", dtype={"section": str})
    assert len(probe) == 7  # 2 types x 3 sections + the mean
    values = probe[["lp_in_domain_auc", "lp_out_domain_auc", "md_auc"]].to_numpy()
    assert ((values >= 0) & (values <= 1)).all()

    export = tmp_path / "export"
    assert cli.main(["export", "--run", str(run), "--out", str(export)]) == 0
    fan = scores[(scores["machine_type"] == "fan") & (scores["section"] == "01")]
    table = read_dataset(dev).set_index("file_name")
    paths = [str(table.loc[f, "path"]) for f in fan["file_name"]]
    served, _ = serve_saved_model(export, paths, {"machine_type": "fan", "section": "01"})
    assert_close_to_scale(served, fan["score"])


def test_spectrogram_functions_match_system_scores(synthetic_sets, tmp_path):
    table = read_dataset(synthetic_sets["dcase2022"]["dev"], machine_types=["fan"])
    # One section (8 training and 8 test clips): the spectrogram branch is the
    # slow one, and what is compared here does not depend on the clip count.
    table = table[table["section"] == "00"].reset_index(drop=True)
    system = WilkinghoffSystem(dict(TINY, branches="spectrogram"))
    system.fit(table, tmp_path / "run", verbose=0)
    scores = system.score(table)
    row = scores.iloc[0]
    member = system.members[0]
    spectrogram_fn, embed_fn = member.extractors["all"].spectrogram_functions()
    spectrogram = spectrogram_fn(row["path"])
    assert spectrogram.shape == (30, 513)
    backend = member.backends[f"{row['machine_type']}_section_{row['section']}"]
    assert float(backend.score(embed_fn(spectrogram[None]))[0]) == pytest.approx(
        row["score"], abs=1e-5)
    # The SavedModel runs the spectrogram branch as in-process scoring does.
    import soundfile
    import tensorflow as tf

    system.export(tmp_path / "export")
    served = tf.saved_model.load(str(tmp_path / "export"))
    clips = scores[(scores["machine_type"] == row["machine_type"])
                   & (scores["section"] == row["section"])]
    waves = np.stack([soundfile.read(p, dtype="float32")[0] for p in clips["path"]])
    out = served.serve(tf.constant(waves), tf.constant(row["machine_type"]),
                       tf.constant(row["section"]))
    np.testing.assert_allclose(out["anomaly_score"].numpy(), clips["score"], rtol=1e-5,
                               atol=1e-5)
    both = ClassifierEmbeddingExtractor(clip_seconds=1.0, length_policy="truncate")
    both.model = member.extractors["all"].model
    with pytest.raises(ValueError, match="spectrogram-only"):
        both.spectrogram_functions()


def test_clip_length_comes_from_dcase2023_data_of_varying_lengths(tmp_path):
    """DCASE 2023 clip lengths vary by machine type: no length setting needed.
    One machine type's files are 32-bit float WAVs: non-PCM16 files go
    through soundfile in every pipeline of the system."""
    import shutil

    import soundfile

    from asd_keras import cli
    from tests.conftest import make_synthetic

    short = make_synthetic(tmp_path / "short", "dcase2023", machine_types=("fan",),
                           seconds=1.0, train=3, target_train=1, test=1, eval=False)
    long = make_synthetic(tmp_path / "long", "dcase2023", machine_types=("valve",),
                          seconds=1.5, train=3, target_train=1, test=1, eval=False)
    data = short / "dev_data" / "raw"
    shutil.copytree(long / "dev_data" / "raw" / "valve", data / "valve")
    for path in (data / "valve").rglob("*.wav"):
        wave, rate = soundfile.read(path, dtype="float32")
        soundfile.write(path, wave, rate, subtype="FLOAT")
    run = tmp_path / "run"
    # The compactness + cross-entropy head trains here, ArcFace in the resume
    # test; AdaCos and softmax differ from these only in the head, whose
    # values are tested in tests/test_angular_layers.py.
    overrides = [f"{k}={v}" for k, v in FAST.items() if k != "clip_seconds"]
    assert cli.main(["train", "--system", "wilkinghoff", "--data", str(data), "--out",
                     str(run), "--verbose", "0", *overrides, "loss=compactness_cce"]) == 0
    config = yaml.safe_load((run / "config.yaml").read_text())["params"]
    assert config["clip_seconds"] == "auto"  # as asked; the trained network has numbers
    trained = json.loads((run / "members" / "member0" / "extractors" / "all" /
                          "extractor.json").read_text())["config"]
    assert trained["clip_seconds"] == 1.5 and trained["length_policy"] == "tile_crop"
    choices = json.loads((run / "run.json").read_text())["data_choices"]
    assert "1-1.5 s" in choices["why"] and "tile_crop" in choices["why"]
    assert cli.main(["score", "--run", str(run), "--data", str(data),
                     "--out", str(tmp_path / "scores")]) == 0
    # Clips of one length: the ICASSP 2023 setting, plain truncation.
    extractor = ClassifierEmbeddingExtractor(branches="spectrum")
    with pytest.raises(ValueError, match="no training clips have been seen"):
        extractor.num_samples
    extractor.resolve_length(sorted((data / "fan" / "train").glob("*.wav")))
    assert (extractor.num_samples, extractor.config["length_policy"]) == (16000, "truncate")


def test_an_interrupted_training_resumes(synthetic_sets, tmp_path, caplog):
    import logging

    table = read_dataset(synthetic_sets["dcase2022"]["dev"], machine_types=["fan"])
    config = dict(FAST, epochs=2, loss="arcface", classes="attribute", block2_bn="residual",
                  mixup_label="standard")
    checkpoints = tmp_path / "checkpoints"
    assert WilkinghoffSystem(config).resumable

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt  # Ctrl-C after the first epoch's backup

    with pytest.raises(KeyboardInterrupt):
        WilkinghoffSystem(config).fit(table, tmp_path / "first", verbose=0,
                                      checkpoint_dir=checkpoints, callbacks=[Stop()])
    seen = []

    class Epochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(epoch)

    system = WilkinghoffSystem(config)
    with caplog.at_level(logging.INFO, logger="asd_keras"):
        system.fit(table, tmp_path / "second", verbose=0, checkpoint_dir=checkpoints,
                   callbacks=[Epochs()])
    assert "Resuming 'wilkinghoff_member0_all' after epoch 1" in caplog.text
    assert seen == [1]  # only the second epoch ran again
    history = pd.read_csv(tmp_path / "second" / "history" / "member0_all.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert np.isfinite(history["loss"]).all()
    assert np.isfinite(system.score(table)["score"]).all()
