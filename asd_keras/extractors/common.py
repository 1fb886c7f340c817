"""Helpers shared by the extractors: scoring clips through a vector
pipeline, and the configuration rules of the log-mel front ends."""

import numpy as np

from asd_keras.config import boolean
from asd_keras.config import choice
from asd_keras.config import integer
from asd_keras.config import number
from asd_keras.data.pipelines import clip_dataset
from asd_keras.features.spectral import LOG_MODES
from asd_keras.features.spectral import PAD_MODES
from asd_keras.utils.progress import progress_bar


def score_clips(paths, loader, score_fn, keys, batch_clips=8, desc="Scoring", progress=True):
    """Runs a waveform-to-scores function over clips, batching equal lengths.

    Args:
        paths: list of str.
        loader: `AudioLoader`.
        score_fn: callable mapping float32 `(clips, samples)` to a dict of
            arrays whose first axis is the clip.
        keys: list of str. Outputs to collect; the first ones that are 1-D
            per clip are checked to be finite.
        batch_clips: int. Clips per call.
        desc: str. Progress bar label.
        progress: bool. Show the progress bar.

    Returns:
        dict key -> array with one row per path, in the order of `paths`.

    Raises:
        ValueError: naming the first clip with a NaN or infinite score.
    """
    info = loader.check(paths, progress=False)
    frames = info["frames"].to_numpy()
    order = np.argsort(frames, kind="stable")
    out = {}
    bar = progress_bar(total=len(paths), desc=desc, unit="clip", leave=False, enabled=progress)
    for length in np.unique(frames):
        idx = order[frames[order] == length]
        ds = clip_dataset([paths[i] for i in idx], loader).batch(int(batch_clips))
        start = 0
        for waveforms in ds:
            result = score_fn(waveforms)
            stop = start + int(waveforms.shape[0])
            for key in keys:
                value = np.asarray(result[key])
                if key not in out:
                    out[key] = np.empty((len(paths),) + value.shape[1:], value.dtype)
                out[key][idx[start:stop]] = value
            bar.update(stop - start)
            start = stop
    bar.close()
    for key, value in out.items():
        if value.ndim != 1:
            continue
        bad = ~np.isfinite(value)
        if bad.any():
            raise ValueError(
                f"Non-finite {key} score for '{paths[int(np.argmax(bad))]}'; check "
                "the clip and the trained model.")
    return out


def front_end_schema():
    """Validation rules of the audio loading and log-mel keys every
    log-mel extractor takes (`sample_rate` ... `pad_mode`)."""
    return {
        "sample_rate": integer(min=1),
        # The vector pipelines take one channel; "both" is for embedding models.
        "channel": choice(0, 1),
        "resample": boolean(),
        "n_fft": integer(min=1),
        "hop_length": integer(min=1),
        "n_mels": integer(min=1),
        "log_mode": choice(*LOG_MODES),
        "pad_mode": choice(*PAD_MODES),
    }


def log_mel_schema():
    """Validation rules of the log-mel, pipeline and seed keys of the dense AE and GANs.

    Returns:
        dict key -> `asd_keras.config.Option`, to merge into a system's schema.
    """
    return {
        **front_end_schema(),
        "n_frames": integer(min=1),
        "power": number(gt=0),
        # Anything but "disk" or "memory" trains without a cache.
        "cache": choice("disk", "memory", "none", optional=True),
        "shuffle_clips": integer(min=1),
        "shuffle_vectors": integer(min=1),
        "score_batch_clips": integer(min=1),
        # NumPy's seeds are 32-bit unsigned.
        "seed": integer(min=0, max=2**32 - 1),
    }
