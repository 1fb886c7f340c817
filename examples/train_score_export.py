"""Train, score, evaluate, reload and export an anomaly system from Python.

What this example teaches:

1. `asd_keras.data.synthetic.generate` writes a small dataset in the DCASE
   2022 layout (what `asd-keras synth` does), and `read_dataset` lists its
   clips as a pandas table (path, machine type, section, domain, split,
   label).
2. `get_system(name)` returns a registered system class; its constructor
   takes the same flat `key=value` configuration as the command line, and
   `fit` trains it on the table's training clips into a run folder.
3. `score` gives each test clip an anomaly score and a decision, and
   `asd_keras.evaluation.metrics.evaluate` computes the official DCASE
   metrics (AUC per domain, pAUC and the official harmonic-mean score).
4. `System.load(run_folder, system.config)` reads the trained system back.
5. `export` writes a TensorFlow SavedModel that takes raw waveforms and a
   machine type and returns the anomaly score and the decision; it is called
   here on one test clip read with soundfile, with no asd_keras code.

Run it (about two minutes on a laptop CPU):

    python examples/train_score_export.py --out /tmp/asd_example

`--tiny` shrinks everything to a few seconds of work (what the tests run).
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import tensorflow as tf

from asd_keras.data.layouts import read_dataset
from asd_keras.data.synthetic import SynthConfig
from asd_keras.data.synthetic import generate
from asd_keras.data.synthetic import synthetic_data_root
from asd_keras.evaluation.metrics import evaluate
from asd_keras.systems import get_system
from asd_keras.utils.io import check_output_dir


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="Output folder (default: a new temporary folder).")
    parser.add_argument("--force", action="store_true", help="Replace a non-empty --out.")
    parser.add_argument("--machines", nargs="+", default=["fan", "valve"],
                        help="Synthetic machine types.")
    parser.add_argument("--seconds", type=float, default=2.0, help="Clip length.")
    parser.add_argument("--train", type=int, default=30,
                        help="Source-domain training clips per section.")
    parser.add_argument("--test", type=int, default=5,
                        help="Test clips per section, domain and label.")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--tiny", action="store_true",
                        help="Tiny data and network: a few seconds (the tests' size).")
    args = parser.parse_args(argv)
    if args.tiny:
        args.machines, args.seconds, args.train, args.test, args.epochs = (
            ["fan"], 0.5, 3, 2, 1)
    return args


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="asd_keras_example_"))
    check_output_dir(out, args.force, what="example folder")

    # 1. Data: three sections per machine type, source and target domains.
    print(f"Writing synthetic {args.machines} clips into '{out / 'data'}'.")
    generate(out / "data", SynthConfig(layout="dcase2022", machine_types=tuple(args.machines),
                                       seconds=args.seconds, train=args.train,
                                       target_train=1, test=args.test, seed=0),
             force=True, progress=False)
    table = read_dataset(synthetic_data_root(out / "data", "dcase2022"))
    print(table.groupby(["machine_type", "split"]).size().to_string())

    # 2. The DCASE dense autoencoder baseline; any key that `asd-keras
    # systems dense_ae` lists may be given. A batch of 128 vectors instead of
    # the baseline's 512 gives this small set more steps per epoch.
    network = {"hidden_units": 8, "latent_dim": 2, "num_hidden_layers": 1,
               "batch_size": 64} if args.tiny else {"batch_size": 128}
    system_class = get_system("dense_ae")
    system = system_class({"epochs": args.epochs, "score": "mse", **network})
    print(f"Training dense_ae ({args.epochs} epochs) into '{out / 'run'}'.")
    system.fit(table, out / "run", verbose=0 if args.tiny else 2)

    # 3. Scores of the test clips and the official metrics.
    scores = system.score(table)
    per_section, official = evaluate(scores, "dcase2022")
    print(per_section.to_string(index=False, float_format="{:.3f}".format))
    print(f"Official score (harmonic mean of AUCs and pAUCs): {official:.3f}")
    scores.to_csv(out / "scores.csv", index=False)

    # 4. The run folder holds everything needed to score again later.
    reloaded = system_class.load(out / "run", system.config)
    difference = float(np.abs(reloaded.score(table)["score"] - scores["score"]).max())
    print(f"Reloaded run: largest score difference {difference:.2e}.")

    # 5. A SavedModel from raw waveforms to scores, for TF Serving and friends.
    manifest = system.export(out / "saved_model")
    print(f"Exported '{out / 'saved_model'}' with inputs {manifest['inputs']}.")
    served = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    clip = scores.iloc[0]
    waveform, _ = soundfile.read(clip["path"], dtype="float32")
    result = served(waveform=tf.constant(waveform[None]),
                    machine_type=tf.constant(clip["machine_type"]))
    print(f"Served score of {clip['file_name']}: {float(result['anomaly_score'][0]):.4f} "
          f"(score gave {clip['score']:.4f}), decision {int(result['decision'][0])}.")
    summary = {"official_score": official, "reload_max_difference": difference,
               "served_score": float(result["anomaly_score"][0]), "score": clip["score"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"Data, run, scores, SavedModel and summary.json are in '{out}'.")


if __name__ == "__main__":
    main()
