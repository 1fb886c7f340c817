"""Every system's SavedModel serves the scores of `score`, and rejects bad input.

Each registered system is trained once (tiny networks, one epoch, 1 s clips
of one machine type; `residual_view` on two-channel DCASE 2026 clips,
`separation` on two machine types),
scored in-process and exported. One fresh Python process then loads every
SavedModel with `tf.saved_model.load` and calls its `serving_default`:

- with all test clips of a machine type in one batch and in batches of 3,
  which must give the scores of `score` whatever the batch (rtol 1e-4 and
  atol 1e-4 of the largest score: float32 kernels round differently on
  CPUs with and without oneDNN and AVX-512, so never bit equality);
- with bad inputs (a NaN sample, too short clips, a wrong channel axis, an
  unknown machine type or section), which the shared export rejects with a
  message naming the input and the fix.
"""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from asd_keras.data.layouts import read_dataset
from asd_keras.data.synthetic import synthetic_data_root
from asd_keras.models.audio_encoders import build_encoder
from asd_keras.systems import SYSTEMS
from asd_keras.systems import get_system
from tests.conftest import make_synthetic
from tests.helpers import assert_close_to_scale
from tests.helpers import assert_decisions_match

# Every system trained and exported: about a minute of both cores (make test-slow).
pytestmark = pytest.mark.slow

BATCH = 3  # the small batch size; the large one is all clips of a machine type
_NETWORK = {"epochs": 1, "clip_seconds": 1.0}
_VECTORS = {"epochs": 1, "batch_size": 64, "hidden_units": 8, "num_hidden_layers": 1,
            "latent_dim": 2}
_SPECTROGRAM = {**_NETWORK, "n_mels": 32, "batch_size": 6, "score_batch_clips": 6,
                "run_eagerly": True}
_FROZEN = {"encoder": "eat", "layer": 1, "pooling": "band_mean", "clip_seconds": 1.0,
           "batch_size": 32, "jit_compile": False, "cache_dir": "none"}
# The tiniest setting of each system that still trains; "{preset}" is the
# tiny EAT preset folder.
CONFIGS = {
    "logmel_stats": {},
    "dense_ae": {**_VECTORS, "steps_per_execution": 1},
    "ganomaly": _VECTORS,
    "skip_ganomaly": _VECTORS,
    "egbad": {**_VECTORS, "normalize": "minmax_train"},
    "wilkinghoff": {**_NETWORK, "batch_size": 8, "kmeans_clusters": 4,
                    "branches": "spectrum"},
    "resnet_ce": _SPECTROGRAM,
    "resnet_arcface": _SPECTROGRAM,
    "simclr": _SPECTROGRAM,
    "simsiam": _SPECTROGRAM,
    "separation": {"width": 4, "num_blocks": 0, "clip_seconds": 0.2,
                   "segment_seconds": 0.1, "epochs": 1, "batch_size": 4,
                   "eval_mixtures": 3, "score_batch_clips": 8, "run_eagerly": True},
    "frozen_encoder": {**_FROZEN, "preset": "{preset}"},
    "residual_view": {**_FROZEN, "preset": "{preset}", "prototypes": 2,
                      "memmixup_neighbours": 3},
    "eat_simam": {**_NETWORK, "preset": "{preset}", "batch_size": 8, "attention_dim": 8,
                  "embedding_dim": 16, "jit_compile": False},
}
# The data of the systems that need more than mono clips of one machine type.
DATA = {"residual_view": "stereo", "separation": "pair"}

# The fresh process: one job (a system's export) per line of its standard
# input, served as soon as the export is written, so that importing
# TensorFlow and loading the models overlap the training of the next
# systems; for each job the parity calls, then the bad inputs, each giving
# the scores or the error message.
_SERVE = r"""
import json, sys
import numpy as np, soundfile, tensorflow as tf

def clips(paths):
    return np.stack([soundfile.read(p, dtype="float32")[0] for p in paths])

def call(function, waveform, strings):
    try:
        out = function(waveform=tf.constant(waveform),
                       **{k: tf.constant(v) for k, v in strings.items()})
    except tf.errors.InvalidArgumentError as error:
        return {"error": error.message}
    return {"score": out["anomaly_score"].numpy().tolist(),
            "decision": out["decision"].numpy().tolist()}

results = {}
for line in sys.stdin:
    name, job = json.loads(line)
    function = tf.saved_model.load(job["export"]).signatures["serving_default"]
    out = results[name] = {"parity": [], "bad": {}}
    for group in job["groups"]:
        wave = clips(group["paths"])
        batched = [call(function, wave[i:i + job["batch"]], group["strings"])
                   for i in range(0, len(wave), job["batch"])]
        out["parity"].append({"all": call(function, wave, group["strings"]),
                              "batched": {k: sum((b.get(k, []) for b in batched), [])
                                          for k in ("score", "decision")}})
    wave, strings = clips(job["groups"][0]["paths"][:2]), job["groups"][0]["strings"]
    nan = wave.copy()
    nan[1, 5] = np.nan
    bad = {"nan": (nan, strings), "one_sample": (wave[:, :1], strings),
           "no_sample": (wave[:, :0], strings)}
    if wave.ndim == 3:
        bad["channels_first"] = (np.swapaxes(wave, 1, 2), strings)
        bad["three_channels"] = (np.concatenate([wave, wave[..., :1]], -1), strings)
    else:
        bad["two_channels"] = (np.stack([wave, wave], -1), strings)
    if "machine_type" in strings:
        bad["unknown_machine_type"] = (wave, {**strings, "machine_type": "pump"})
    if "section" in strings:
        bad["unknown_section"] = (wave, {**strings, "section": "07"})
    for case, (waveform, inputs) in bad.items():
        out["bad"][case] = call(function, waveform, inputs)
print(json.dumps(results))
"""


def _dataset(base, layout, **settings):
    root = make_synthetic(base, layout, eval=False, **settings)
    return read_dataset(synthetic_data_root(root, layout, "dev"))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Every system trained, scored and exported once: per system, the fresh
    process's results, the in-process scores with their thresholds, and the
    export manifest."""
    assert set(CONFIGS) == set(SYSTEMS.names()), "every system needs a tiny setting here"
    base = tmp_path_factory.mktemp("served")
    # One machine type: the per-machine-type systems train one network.
    tables = {
        "mono": _dataset(base / "mono", "dcase2023", machine_types=("fan",), train=4,
                         target_train=2, test=2),
        "stereo": _dataset(base / "stereo", "dcase2026", machine_types=("fan",), train=3,
                           target_train=1, test=2),
        # The separation task mixes a machine type with the others.
        "pair": _dataset(base / "pair", "dcase2023", machine_types=("fan", "valve"), train=2,
                         target_train=1, test=1),
    }
    keras.utils.set_random_seed(5)
    preset = base / "eat_tiny"
    build_encoder("eat", num_frames=112, num_layers=2, dim=32, num_heads=2).save_to_preset(
        preset, metadata={"checkpoint": "tiny test encoder"})
    scored, manifests = {}, {}
    # Its TensorFlow log goes to a file: a full stderr pipe would stall it.
    with open(base / "serve.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-c", _SERVE], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            for name, settings in CONFIGS.items():
                config = {k: str(preset) if v == "{preset}" else v for k, v in settings.items()}
                table = tables[DATA.get(name, "mono")]
                system = get_system(name)(config)
                system.fit(table, base / name / "run", verbose=0)
                frame = system.score(table)
                manifests[name] = system.export(base / name / "export")
                inputs = manifests[name]["inputs"]
                groups, scored[name] = [], []
                for (machine_type, section), rows in frame.groupby(["machine_type", "section"]):
                    strings = {"machine_type": machine_type, "section": section}
                    groups.append({"paths": [str(p) for p in rows["path"]],
                                   "strings": {k: v for k, v in strings.items() if k in inputs}})
                    scored[name].append((rows, _threshold(system, machine_type, section)))
                server.stdin.write(json.dumps([name, {"export": str(base / name / "export"),
                                                      "groups": groups, "batch": BATCH}]) + "\n")
                server.stdin.flush()
        except BaseException:
            server.kill()  # it would wait for more jobs
            raise
        stdout, _ = server.communicate()
    assert server.returncode == 0, (base / "serve.log").read_text()[-3000:]
    out = json.loads(stdout.strip().splitlines()[-1])
    return {name: (out[name], scored[name], manifests[name]) for name in CONFIGS}


def _threshold(system, machine_type, section):
    grouping = system.config["grouping"]
    key = {"all": "all", "machine_type": machine_type,
           "section": f"{machine_type}_section_{section}"}[grouping]
    return system.thresholds[key]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_served_scores_equal_score_at_two_batch_sizes(served, name):
    results, scored, _ = served[name]
    for got, (rows, threshold) in zip(results["parity"], scored):
        expected = rows["score"].to_numpy()
        assert len(expected) > BATCH and np.ptp(expected) > 0, "the check would be empty"
        for batch, call in got.items():
            assert "error" not in call, call
            assert_close_to_scale(call["score"], expected,
                                  err_msg=f"{name}, {rows['machine_type'].iloc[0]}, {batch}")
            if np.abs(expected - threshold).max() > 1e-4 * max(1.0, abs(threshold)):
                assert_decisions_match(call["decision"], rows["decision"], expected, threshold)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_nan_and_empty_clips_are_rejected(served, name):
    bad = served[name][0]["bad"]
    assert "waveform has a NaN or inf sample (clip 1, sample 5)" in bad["nan"]["error"]
    # Score accepts a one-sample clip where the length policy tiles it.
    message = bad["no_sample"]["error"]
    assert "waveform holds clips of 0 samples; at least " in message
    assert "pass longer clips" in message


def test_clips_shorter_than_score_accepts_are_rejected_with_its_minimum(served):
    """The served minimum is the extractor's: one stacked vector of 5 log-mel
    frames of the dense AE (2049 samples), one analysis window of
    `logmel_stats` (1024), the clip length of a network trained with
    `length_policy=truncate`."""
    assert "clips of 1 samples; at least 2049 needed (the shortest clip the dense_ae " \
           "extractor reads)" in served["dense_ae"][0]["bad"]["one_sample"]["error"]
    assert "at least 1024 needed (the shortest clip the logmel_stats" in served[
        "logmel_stats"][0]["bad"]["one_sample"]["error"]
    assert "at least 16000 needed (the clip length of the finetuned_encoder extractor, " \
           "length_policy=truncate)" in served["eat_simam"][0]["bad"]["no_sample"]["error"]


def test_wrong_channel_axis_is_rejected(served):
    bad = served["residual_view"][0]["bad"]
    assert "waveform has shape [2, 2, 16000]; this model takes (clips, samples, 2)" in bad[
        "channels_first"]["error"]
    assert "transpose a (clips, 2, samples) array" in bad["channels_first"]["error"]
    assert "waveform has shape [2, 16000, 3]" in bad["three_channels"]["error"]
    mono = served["logmel_stats"][0]["bad"]["two_channels"]["error"]
    assert "waveform has shape [2, 16000, 2]; this model takes (clips, samples)" in mono


def test_unknown_machine_type_and_section_are_rejected(served):
    bad = served["logmel_stats"][0]["bad"]
    assert ("section 07 is not one of the trained sections 00 of machine type fan: pass "
            "one of them") in bad["unknown_section"]["error"]
    assert ("machine_type pump is not one of the trained machine types fan: pass one of "
            "them") in bad["unknown_machine_type"]["error"]
    # A per-machine-type model of two machine types.
    assert ("machine_type pump is not one of the trained machine types fan, valve: pass "
            "one of them") in served["separation"][0]["bad"]["unknown_machine_type"]["error"]



def test_manifest_names_the_inputs_and_the_shortest_clip(served):
    expected = {"logmel_stats": (["waveform", "machine_type", "section"], [None, None], 1024),
                "dense_ae": (["waveform", "machine_type"], [None, None], 2049),
                "residual_view": (["waveform", "machine_type", "section"], [None, None, 2],
                                  400),
                "eat_simam": (["waveform", "machine_type", "section"], [None, None], 16000)}
    for name, (inputs, shape, samples) in expected.items():
        manifest = served[name][2]
        assert (manifest["inputs"], manifest["waveform_shape"], manifest["min_samples"]) == (
            inputs, shape, samples), name
