"""Convert a BEATs/EAT checkpoint to Keras and compute frozen clip embeddings.

What this example teaches:

1. `convert_checkpoint` (what `asd-keras convert` runs) reads an official
   PyTorch `.pt`, a Hugging Face `.safetensors` or an `.npz` state dict
   without torch and writes a keras-hub preset folder (`config.json`,
   `model.weights.h5`, `metadata.json`).
2. `load_encoder(preset_folder)` builds the Keras encoder (a keras-hub
   `Backbone`, also loadable with `EATBackbone.from_preset(folder)`): a
   functional model from waveforms to the Kaldi filter banks and every
   layer's tokens.
3. The `frozen_encoder` extractor pools a layer's tokens into one vector per
   clip (cached on disk), and the `frozen_encoder` system scores those
   embeddings with kNN memory banks, as GenRep does, with nothing trained.

With `--checkpoint` it converts your downloaded file, e.g.

    python examples/convert_and_embed.py --checkpoint EAT-base_epoch30_pretrain.pt

Without it, a stand-in checkpoint with random weights is written first
(`random_state_dict` gives the official key names and shapes; saved as
safetensors), so the example runs offline. `--tiny` is the tests' size.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import soundfile
from safetensors.numpy import save_file

from asd_keras.data.layouts import read_dataset
from asd_keras.data.synthetic import SynthConfig
from asd_keras.data.synthetic import generate
from asd_keras.data.synthetic import synthetic_data_root
from asd_keras.evaluation.metrics import evaluate
from asd_keras.extractors import get_extractor
from asd_keras.models.audio_encoders import load_encoder
from asd_keras.models.converters import convert_checkpoint
from asd_keras.models.converters import random_state_dict
from asd_keras.systems import get_system
from asd_keras.utils.io import check_output_dir

# Stand-in sizes: a CPU-sized model and a 2-layer toy (the tests' fixtures).
# A safetensors file holds no configuration: the head count is given to
# the converter.
STAND_IN = {
    "eat": {"small": {"num_layers": 4, "dim": 192, "num_heads": 3},
            "tiny": {"num_layers": 2, "dim": 32, "num_heads": 4}},
    "beats": {"small": {"num_layers": 4, "dim": 192, "num_heads": 3, "ffn_dim": 768},
              "tiny": {"num_layers": 2, "dim": 32, "num_heads": 4, "ffn_dim": 64,
                       "patch_dim": 16, "conv_pos": 16, "conv_pos_groups": 4}},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="An EAT or BEATs checkpoint file (default: a "
                        "random stand-in).")
    parser.add_argument("--encoder", choices=("eat", "beats"), default="eat")
    parser.add_argument("--trust-pickle", action="store_true", help="Unpickle objects of a "
                        "trusted .pt file's cfg (as 'asd-keras convert --trust-pickle').")
    parser.add_argument("--out", help="Output folder (default: a new temporary folder).")
    parser.add_argument("--force", action="store_true", help="Replace a non-empty --out.")
    parser.add_argument("--seconds", type=float, default=2.0, help="Synthetic clip length.")
    parser.add_argument("--tiny", action="store_true", help="A few seconds (the tests' size).")
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="asd_keras_convert_"))
    check_output_dir(out, args.force, what="example folder")
    out.mkdir(parents=True, exist_ok=True)

    overrides = {}
    checkpoint = args.checkpoint
    if checkpoint is None:
        config = STAND_IN[args.encoder]["tiny" if args.tiny else "small"]
        checkpoint = out / f"stand_in_{args.encoder}.safetensors"
        save_file(random_state_dict(args.encoder, config, seed=0), str(checkpoint))
        overrides = {"num_heads": config["num_heads"]}
        print(f"Wrote a random stand-in checkpoint '{checkpoint}' ({config}).")

    preset = out / "preset"
    metadata = convert_checkpoint(args.encoder, checkpoint, preset, force=True,
                                  trust_pickle=args.trust_pickle, overrides=overrides)
    print(f"Converted {metadata['keys']} tensors into the preset '{preset}'.")

    seconds = 0.5 if args.tiny else args.seconds
    generate(out / "data", SynthConfig(machine_types=("fan",), seconds=seconds,
                                       train=3 if args.tiny else 20, target_train=1,
                                       test=2 if args.tiny else 5), force=True, progress=False)
    table = read_dataset(synthetic_data_root(out / "data", "dcase2022"))

    # The encoder itself: a Keras model from waveforms to every layer's tokens.
    # EAT pads or crops the filter banks to num_frames (1024 = 10 s; 10 ms
    # hop, a multiple of the 16-frame patch).
    frames = {"num_frames": int(seconds * 100) // 16 * 16} if args.encoder == "eat" else {}
    encoder, _ = load_encoder(str(preset), overrides=frames)
    waveform, _ = soundfile.read(table["path"].iloc[0], dtype="float32")
    tokens = encoder(waveform[None])
    print("Encoder outputs: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in tokens.items()))

    # Frozen clip embeddings: mean-pooled tokens of every layer, cached.
    last = encoder.num_layers
    frozen = dict(encoder=args.encoder, preset=str(preset), pooling="mean",
                  clip_seconds=seconds, cache_dir=str(out / "embedding_cache"),
                  jit_compile=False, **frames)
    extractor = get_extractor("frozen_encoder", layer=list(range(1, last + 1)), **frozen)
    embeddings = extractor.transform(table)
    np.savez(out / "embeddings.npz", **embeddings)
    print("Clip embeddings: " + ", ".join(f"{k} {v.shape}" for k, v in embeddings.items()))

    # The same embeddings scored by kNN memory banks (the cache is reused).
    system = get_system("frozen_encoder")({**frozen, "layer": last, "k": 1})
    system.fit(table, out / "run", verbose=0)
    scores = system.score(table)
    _, official = evaluate(scores, "dcase2022")
    print(f"frozen_encoder + kNN on {len(scores)} test clips: official score {official:.3f} "
          f"({'random' if args.checkpoint is None else 'converted'} weights).")
    summary = {"preset": str(preset), "encoder_outputs": sorted(tokens),
               "embedding_shapes": {k: list(v.shape) for k, v in embeddings.items()},
               "scores": scores["score"].tolist()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"Preset, embeddings and summary.json are in '{out}'.")


if __name__ == "__main__":
    main()
