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
      -> SubClusterAdaCos head, trained to tell the machine types apart with
         MixupCrossEntropy (the head returns probabilities and targets
         stacked, so the loss reads the targets from the prediction).

A clip's anomaly score is then one minus its embedding's largest cosine to
the sub-cluster centres of its machine type: sounds unlike the normal
training clips of that machine lie far from every centre.

Run it (a few minutes on a laptop; `--tiny` is the tests' size):

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


def pipeline(rows, batch_size, shuffle):
    """`((waveform, label), label)` batches read from the clips' files."""
    loader = AudioLoader(16000, channel="both")
    paths = [str(p) for p in rows["path"]]
    loader.check(paths, progress=False)
    labels = keras.utils.to_categorical(
        [MACHINES.index(m) for m in rows["machine_type"]], len(MACHINES))
    clips = labelled_clips(paths, [labels], loader, shuffle=shuffle, seed=0, in_memory=True)
    return clips.map(lambda w, y: ((w, y), y)).batch(batch_size).prefetch(tf.data.AUTOTUNE)


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

    sizes = dict(seconds=0.5, train=3, test=2) if args.tiny else dict(seconds=2.0, train=40,
                                                                       test=5)
    print(f"Writing two-channel synthetic {list(MACHINES)} clips into '{out / 'data'}'.")
    generate(out / "data", SynthConfig(layout="dcase2026", machine_types=MACHINES,
                                       target_train=1, **sizes), force=True, progress=False)
    table = read_dataset(synthetic_data_root(out / "data", "dcase2026"))
    train, test = table[table["split"] == "train"], table[table["split"] == "test"]

    model = build_model(len(MACHINES), *((32, 16, 2) if args.tiny else (64, 64, 4)))
    model.compile(keras.optimizers.Adam(1e-3), loss=MixupCrossEntropy())
    model.summary(line_length=100)
    epochs = 1 if args.tiny else args.epochs
    history = model.fit(pipeline(train, 16, shuffle=True), epochs=epochs, shuffle=False,
                        verbose=0 if args.tiny else 2)

    # The .keras file holds the custom layers' configs; importing asd_keras
    # registered them, so load_model needs no custom_objects.
    model.save(out / "model.keras")
    reloaded = keras.saving.load_model(out / "model.keras")
    batch = next(iter(pipeline(test, 64, shuffle=False)))[0]
    difference = float(np.abs(model.predict(batch, verbose=0)
                              - reloaded.predict(batch, verbose=0)).max())
    print(f"Reloaded model.keras: largest output difference {difference:.2e}.")

    # Anomaly scores from the embedding and the head's centres.
    embedder = keras.Model(reloaded.inputs[0], reloaded.get_layer("embedding").output)
    embeddings = embedder.predict(pipeline(test, 64, shuffle=False).map(lambda x, y: x[0]),
                                  verbose=0)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    centres = reloaded.get_layer("head").class_centers()  # (classes, K, dim), unit
    own = centres[[MACHINES.index(m) for m in test["machine_type"]]]
    scores = 1.0 - np.einsum("nkd,nd->nk", own, embeddings).max(axis=1)
    aucs = {m: auc(test["label"][test["machine_type"] == m].astype(int),
                   scores[(test["machine_type"] == m).to_numpy()]) for m in MACHINES}
    print("AUC per machine type: " + ", ".join(f"{m} {v:.3f}" for m, v in aucs.items()))
    summary = {"loss": history.history["loss"], "reload_max_difference": difference,
               "scores": scores.tolist(), "auc": aucs}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"Model, data and summary.json are in '{out}'.")


if __name__ == "__main__":
    main()
