"""Audio checks and loading for `tf.data` pipelines.

Files are checked up front (`inspect_audio`), cheaply, by reading headers,
so that a corrupt, truncated, wrongly sampled or too short file stops the run
with its name in the error instead of failing deep inside a pipeline.
Decoding itself is `tf.audio.decode_wav` (16-bit PCM, the DCASE format);
other WAV encodings, and resampling, go through soundfile/soxr in a
`tf.numpy_function`. tensorflow-io is not used: its last release does not
load with TensorFlow 2.21.
"""

import re
import struct
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile
import soxr

from asd_keras.utils.progress import progress_bar

LENGTH_POLICIES = ("none", "truncate", "pad", "tile_crop")

# The loader's assertion text; `nonfinite_audio_error` finds the file in it.
_NONFINITE = "Non-finite samples (NaN or inf) in"
_NONFINITE_PATH = re.compile(re.escape(_NONFINITE) + r"\] \[(.*)\] \[- the file")


def nonfinite_audio_error(error):
    """The loader's non-finite-sample assertion as a ValueError naming the file.

    Decoding every clip up front to look for NaN would cost a full pass over
    the data, so the check runs inside `AudioLoader.load` and fails deep in
    `tf.data`; this turns that TensorFlow error back into a clear one.

    Args:
        error: any exception.

    Returns:
        ValueError, or None when `error` is not that assertion.
    """
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(error, tf.errors.InvalidArgumentError):
        return None
    match = _NONFINITE_PATH.search(str(error))
    if match is None:
        return None
    return ValueError(
        f"'{match.group(1)}' holds non-finite samples (NaN or inf): the file "
        "is corrupt. Re-export it, or remove it from the data folder."
    )


def _check_riff(path):
    """Checks the RIFF/WAVE structure and that the data chunk is complete."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ValueError(
                f"'{path}' is not a RIFF/WAVE file (it is {size} bytes and "
                "starts with "
                f"{head[:12]!r}). Re-download or re-export it, or remove it "
                "from the data folder."
            )
        offset = 12
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise ValueError(
                    f"'{path}' has no audio data chunk: the file is "
                    "truncated or corrupt. Re-download or re-export it, or "
                    "remove it from the data folder."
                )
            chunk_id, chunk_size = struct.unpack("<4sI", chunk)
            offset += 8
            if chunk_id == b"data":
                available = size - offset
                if available < chunk_size:
                    raise ValueError(
                        f"'{path}' is truncated: its header declares "
                        f"{chunk_size} bytes of audio but only {available} "
                        "follow. Re-download or re-export it, or remove it "
                        "from the data folder."
                    )
                return
            offset += chunk_size + (chunk_size & 1)
            f.seek(offset)


def inspect_audio(paths, progress=True):
    """Reads the header of every file.

    Args:
        paths: iterable of str. WAV files.
        progress: bool. Show a progress bar.

    Returns:
        pandas.DataFrame with columns path, sample_rate, channels, frames,
        subtype, in the order of `paths`.

    Raises:
        FileNotFoundError: if a file is missing.
        ValueError: if a file is not a readable, complete WAV file.
    """
    rows = []
    paths = list(paths)
    for path in progress_bar(
        paths,
        desc="Checking audio",
        unit="file",
        enabled=progress and len(paths) >= 200,
        leave=False,
    ):
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"Audio file '{path}' does not exist. Check the data folder."
            )
        _check_riff(path)
        try:
            info = soundfile.info(path)
        except (RuntimeError, soundfile.LibsndfileError) as error:
            raise ValueError(
                f"Cannot read '{path}': {error}. Re-download or re-export "
                "it, or remove it from the data folder."
            ) from None
        rows.append(
            {
                "path": str(path),
                "sample_rate": info.samplerate,
                "channels": info.channels,
                "frames": info.frames,
                "subtype": info.subtype,
            }
        )
    return pd.DataFrame(
        rows, columns=["path", "sample_rate", "channels", "frames", "subtype"]
    )


class AudioLoader:
    """Loads clips as float32 waveforms inside a `tf.data` pipeline.

    Args:
        sample_rate: int. Expected sample rate. Defaults to `16000`.
        channel: int or str. `0` (near microphone in DCASE 2026, the only
            channel of mono files), `1` (far microphone), or `"both"` for a
            `(samples, 2)` output. Defaults to `0`.
        length: int or None. Target length in samples for the length policy.
        length_policy: str. `"none"` (keep every sample), `"truncate"` (cut
            to `length`; shorter clips are an error), `"pad"` (zero-pad or
            cut to `length`) or `"tile_crop"` (repeat the clip until it is at
            least `length` long, then crop; the crop offset is random when
            `random_crop` is True, else 0). Defaults to `"none"`.
        resample: bool. Resample clips whose rate differs from
            `sample_rate` (soxr, high quality) instead of raising an error.
            Defaults to False.
        random_crop: bool. Random crop offset for `tile_crop`.
        min_samples: int. Shortest acceptable clip, e.g. one analysis frame.

    Example:
    >>> loader = AudioLoader(sample_rate=16000)
    >>> info = loader.check(["fan/train/section_00_....wav"])  # doctest: +SKIP
    >>> waveform = loader.load(tf.constant(path))  # doctest: +SKIP
    """

    def __init__(
        self,
        sample_rate=16000,
        channel=0,
        length=None,
        length_policy="none",
        resample=False,
        random_crop=False,
        min_samples=1,
    ):
        if channel not in (0, 1, "both"):
            raise ValueError(
                f"channel must be 0, 1 or 'both'; received {channel!r}."
            )
        if length_policy not in LENGTH_POLICIES:
            raise ValueError(
                f"length_policy must be one of {LENGTH_POLICIES}; received "
                f"{length_policy!r}."
            )
        if length_policy != "none" and (length is None or int(length) <= 0):
            raise ValueError(
                f"length_policy={length_policy!r} needs a positive `length` "
                f"in samples; received {length!r}."
            )
        self.sample_rate = int(sample_rate)
        self.channel = channel
        self.length = None if length is None else int(length)
        self.length_policy = length_policy
        self.resample = bool(resample)
        self.random_crop = bool(random_crop)
        self.min_samples = int(min_samples)
        self._use_soundfile = False

    def get_config(self):
        return {
            "sample_rate": self.sample_rate,
            "channel": self.channel,
            "length": self.length,
            "length_policy": self.length_policy,
            "resample": self.resample,
            "random_crop": self.random_crop,
            "min_samples": self.min_samples,
        }

    def check(self, paths, progress=True):
        """Checks files against this loader's expectations.

        Picks the decoder: TensorFlow's when every file is 16-bit PCM at the
        expected rate, soundfile otherwise.

        Args:
            paths: iterable of str.
            progress: bool. Show a progress bar.

        Returns:
            The `inspect_audio` table.

        Raises:
            ValueError: naming the first offending file and the fix.
        """
        info = inspect_audio(paths, progress=progress)
        if info.empty:
            raise FileNotFoundError("No audio files to check.")
        for row in info.itertuples(index=False):
            if row.sample_rate != self.sample_rate and not self.resample:
                raise ValueError(
                    f"'{row.path}' is sampled at {row.sample_rate} Hz but "
                    f"{self.sample_rate} Hz is expected. Resample the data, "
                    "set sample_rate to match, or set resample=true."
                )
            if self.channel == "both" or self.channel == 1:
                if row.channels < 2:
                    raise ValueError(
                        f"'{row.path}' has {row.channels} channel(s) but "
                        f"channel={self.channel!r} needs two (DCASE 2026 "
                        "near/far recordings). Use channel=0 for mono data."
                    )
            frames = row.frames
            if row.sample_rate != self.sample_rate:
                frames = int(frames * self.sample_rate / row.sample_rate)
            if frames < self.min_samples:
                raise ValueError(
                    f"'{row.path}' holds {frames} samples, fewer than the "
                    f"{self.min_samples} needed for one analysis frame. "
                    "Remove the clip or use a smaller window."
                )
            if self.length_policy == "truncate" and frames < self.length:
                raise ValueError(
                    f"'{row.path}' holds {frames} samples, fewer than the "
                    f"length {self.length} that length_policy='truncate' "
                    "needs. Use 'pad' or 'tile_crop', or a smaller length."
                )
        self._use_soundfile = bool(
            (info["subtype"] != "PCM_16").any()
            or (info["sample_rate"] != self.sample_rate).any()
        )
        return info

    def _read_numpy(self, path):
        if isinstance(path, np.ndarray):
            path = path.item()
        path = path.decode() if isinstance(path, bytes) else str(path)
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
        if rate != self.sample_rate:
            data = soxr.resample(data, rate, self.sample_rate, quality="HQ")
        return np.ascontiguousarray(data, dtype=np.float32)

    def load(self, path):
        """Decodes one clip and applies the length policy; `path` is a
        scalar string tensor.

        Returns:
            float32 tensor `(samples,)`, or `(samples, 2)` for
            `channel="both"`.
        """
        return self.fix_length(self.decode(path))

    def decode(self, path):
        """Decodes one clip at its full length (`load` without the length
        policy), e.g. to keep it in memory and crop it anew every epoch."""
        import tensorflow as tf  # lazy: the checks and nonfinite_audio_error need no TF

        if self._use_soundfile:
            audio = tf.numpy_function(
                self._read_numpy, [path], tf.float32, stateful=False
            )
            audio = tf.ensure_shape(audio, [None, None])
        else:
            audio, rate = tf.audio.decode_wav(tf.io.read_file(path))
            tf.debugging.Assert(
                tf.equal(rate, self.sample_rate),
                [
                    "Wrong sample rate in",
                    path,
                    "expected",
                    self.sample_rate,
                    "got",
                    rate,
                ],
            )
        with tf.control_dependencies(
            [
                tf.debugging.Assert(
                    tf.reduce_all(tf.math.is_finite(audio)),
                    [
                        _NONFINITE,
                        path,
                        "- the file is corrupt: re-export or remove it.",
                    ],
                )
            ]
        ):
            if self.channel == "both":
                return audio[:, :2]
            return audio[:, self.channel]

    def fix_length(self, audio):
        """Applies the length policy along the first axis."""
        import tensorflow as tf  # lazy: the checks and nonfinite_audio_error need no TF

        if self.length_policy == "none":
            return audio
        length = self.length
        if self.length_policy == "truncate":
            return audio[:length]
        if self.length_policy == "pad":
            audio = audio[:length]
            pad = length - tf.shape(audio)[0]
            paddings = [[0, pad]] + [[0, 0]] * (len(audio.shape) - 1)
            return tf.pad(audio, paddings)
        # tile_crop
        n = tf.shape(audio)[0]
        repeats = (length + n - 1) // n + 1
        multiples = [repeats] + [1] * (len(audio.shape) - 1)
        tiled = tf.tile(audio, multiples)
        if self.random_crop:
            offset = tf.random.uniform([], 0, n, dtype=tf.int32)
        else:
            offset = 0
        return tiled[offset : offset + length]
