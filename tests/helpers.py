"""Assertions shared by the tests."""

import keras
import numpy as np


def assert_decisions_match(decisions, expected, scores, threshold, atol=1e-4):
    """Decisions agree, except for clips whose score is within `atol` of the threshold.

    Scores computed in another process or graph (a SavedModel) agree only to
    a float tolerance, so a clip that sits on the threshold may flip; every
    other clip must get the same decision.
    """
    decisions = np.asarray(decisions)
    expected = np.asarray(expected)
    scores = np.asarray(scores, dtype=float)
    threshold = np.broadcast_to(np.asarray(threshold, dtype=float), scores.shape)
    clear = np.abs(scores - threshold) > atol * np.maximum(1.0, np.abs(threshold))
    assert clear.any(), "every clip sits on the threshold; the test proves nothing"
    np.testing.assert_array_equal(decisions[clear], expected[clear])


def serve_in_fresh_process(export, paths, **strings):
    """Runs an exported SavedModel's `serving_default` in a new Python process.

    Args:
        export: folder of the SavedModel.
        paths: WAV files of equal length, stacked into one batch.
        **strings: the scalar string inputs, e.g. `machine_type="fan"`.

    Returns:
        (anomaly scores, decisions) as lists.
    """
    import json
    import subprocess
    import sys

    code = (
        "import json, sys, numpy as np, soundfile, tensorflow as tf\n"
        "paths, strings = json.loads(sys.argv[2]), json.loads(sys.argv[3])\n"
        "wave = np.stack([soundfile.read(p, dtype='float32')[0] for p in paths])\n"
        "model = tf.saved_model.load(sys.argv[1])\n"
        "out = model.signatures['serving_default'](waveform=tf.constant(wave),"
        " **{k: tf.constant(v) for k, v in strings.items()})\n"
        "print(json.dumps([out['anomaly_score'].numpy().tolist(),"
        " out['decision'].numpy().tolist()]))\n")
    result = subprocess.run(
        [sys.executable, "-c", code, str(export), json.dumps([str(p) for p in paths]),
         json.dumps(strings)], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


class Interrupt(keras.callbacks.Callback):
    """Ctrl-C at the end of an epoch of one model (named `..._<model_suffix>`)."""

    def __init__(self, model_suffix, epoch):
        super().__init__()
        self.model_suffix, self.epoch = model_suffix, epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.model.name.endswith(self.model_suffix) and epoch + 1 == self.epoch:
            raise KeyboardInterrupt
