"""Use asd-keras layers in your own Keras model, trained with plain `model.fit`.

What this example teaches: the project's layers are ordinary Keras 3 layers
(they use `keras.ops` and `get_config`), so they go into any functional
model, train under `model.fit` on a `tf.data` pipeline, and save to and load
from a `.keras` file. The model here embeds two-microphone clips (DCASE 2026
layout: channel 0 near the machine, channel 1 out in the hall):

    waveform (batch, samples, 2)
      -> per microphone: KaldiFbank (log filter banks, the BEATs/EAT front
         end) -> SimAM (parameter-free attention) -> a small shared encoder
      -> [near | far] -> ResidualView (f_near - alpha * f_far)
      -> SubClusterAdaCos head, trained with MixupCrossEntropy (the head
         returns probabilities and targets stacked; the loss reads the
         targets from the prediction) to tell apart the training clips'
         classes: machine type and attributes (e.g. "fan spd_2_bg_A").

A clip's anomaly score is then one minus its embedding's largest cosine to
the sub-cluster centres of its machine type's classes: sounds unlike the
normal training clips of that machine lie far from every centre.

Run it (about a minute on a laptop CPU; `--tiny` is the tests' size):

    python examples/layers_in_your_model.py --out /tmp/asd_layers
"""

import argparse
import json
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from asd_keras.data.audio import AudioLoader
from asd_keras.data.layouts import read_dataset
from asd_keras.data.pipelines import labelled_clips
from asd_keras.data.synthetic import SynthConfig
from asd_keras.data.synthetic import generate
from asd_keras.data.synthetic import synthetic_data_root
from asd_keras.evaluation.metrics import auc
from asd_keras.features.kaldi import KaldiFbank
from asd_keras.layers import ResidualView
from asd_keras.layers import SimAM
from asd_keras.layers import SubClusterAdaCos
from asd_keras.losses import MixupCrossEntropy
from asd_keras.utils.io import check_output_dir

MACHINES = ("fan", "valve", "ToyCar")


def build_model(num_classes, mel_bins, width, subclusters):
    """`[waveform (batch, samples, 2), one-hot label]` -> stacked head output."""
    waveform = keras.Input((None, 2), name="waveform")
    label = keras.Input((num_classes,), name="label")
    # One instance per stage, so both microphones share the same weights.
    fbank = KaldiFbank(num_mel_bins=mel_bins, window_type="hanning", norm_mean=-4.3,
                       norm_std=4.6)
    attention = SimAM(mode="global")
    encoder = keras.Sequential([
        keras.Input((None, mel_bins)),
        keras.layers.Conv1D(width, 5, strides=2, activation="relu"),
        keras.layers.Conv1D(width, 5, strides=2, activation="relu"),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(width),
    ], name="encoder")
    views = [encoder(attention(fbank(waveform[..., mic]))) for mic in (0, 1)]
    paired = keras.layers.Concatenate(name="near_far")(views)
    embedding = ResidualView(alpha=0.5, name="embedding")(paired)
    output = SubClusterAdaCos(num_classes, subclusters, seed=0, name="head")([embedding, label])
    return keras.Model([waveform, label], output, name="two_mic_embedder")


def waveforms(rows, extras=()):
    """A `tf.data` pipeline of the clips' `(samples, 2)` waveforms (and extras)."""
    loader = AudioLoader(16000, channel="both")
    paths = [str(p) for p in rows["path"]]
    loader.check(paths, progress=False)
    return labelled_clips(paths, list(extras), loader, shuffle=bool(extras), seed=0,
                          in_memory=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="Output folder (default: a new temporary folder).")
    parser.add_argument("--force", action="store_true", help="Replace a non-empty --out.")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="A few seconds (the tests' size).")
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="asd_keras_layers_"))
    check_output_dir(out, args.force, what="example folder")
    keras.utils.set_random_seed(0)

    sizes = dict(seconds=0.5, train=3, test=2) if args.tiny else dict(seconds=2, train=40, test=5)
    print(f"Writing two-channel synthetic {list(MACHINES)} clips into '{out / 'data'}'.")
    generate(out / "data", SynthConfig(layout="dcase2026", machine_types=MACHINES,
                                       target_train=1, **sizes), force=True, progress=False)
    table = read_dataset(synthetic_data_root(out / "data", "dcase2026"))
    train, test = table[table["split"] == "train"], table[table["split"] == "test"]
    classes = sorted(set(zip(train["machine_type"], train["attribute_string"])))
    labels = keras.utils.to_categorical([classes.index(c) for c in zip(
        train["machine_type"], train["attribute_string"])], len(classes))
    dataset = waveforms(train, [labels]).map(lambda w, y: ((w, y), y)).batch(16)

    model = build_model(len(classes), *((32, 16, 2) if args.tiny else (64, 64, 4)))
    model.compile(keras.optimizers.Adam(1e-3), loss=MixupCrossEntropy())
    model.summary(line_length=100)
    history = model.fit(dataset.prefetch(tf.data.AUTOTUNE), shuffle=False,
                        epochs=1 if args.tiny else args.epochs, verbose=0 if args.tiny else 2)

    # The .keras file holds the custom layers' configs; importing asd_keras
    # registered them, so load_model needs no custom_objects.
    model.save(out / "model.keras")
    reloaded = keras.saving.load_model(out / "model.keras")
    batch = next(iter(dataset))[0]
    difference = float(np.abs(keras.ops.convert_to_numpy(model(batch))
                              - keras.ops.convert_to_numpy(reloaded(batch))).max())
    print(f"Reloaded model.keras: largest output difference {difference:.2e}.")

    # Anomaly scores from the embeddings and the head's centres.
    embedder = keras.Model(reloaded.inputs[0], reloaded.get_layer("embedding").output)
    embeddings = embedder.predict(waveforms(test).batch(64), verbose=0)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    centres = reloaded.get_layer("head").class_centers()  # (classes, K, dim), unit
    cosines = np.einsum("ckd,nd->nck", centres, embeddings).max(axis=2)
    own = np.array([[c[0] == m for c in classes] for m in test["machine_type"]])
    scores = 1.0 - np.where(own, cosines, -1.0).max(axis=1)
    aucs = {m: auc(test["label"][test["machine_type"] == m].astype(int),
                   scores[(test["machine_type"] == m).to_numpy()]) for m in MACHINES}
    print("AUC per machine type: " + ", ".join(f"{m} {v:.3f}" for m, v in aucs.items()))
    summary = {"classes": [" ".join(c) for c in classes], "loss": history.history["loss"],
               "reload_max_difference": difference, "scores": scores.tolist(), "auc": aucs}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"Model, data and summary.json are in '{out}'.")

if __name__ == "__main__":
    main()
