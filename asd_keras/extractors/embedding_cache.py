"""The on-disk cache of per-clip embeddings, with a checksum per entry.

An entry is two files in `<root>/<key[:2]>/`: `<key>.npy`, the clip's
`(layers, dim)` float32 embeddings, and `<key>.sha256`, the SHA-256 of that
file's bytes. Each is written atomically, the checksum after the array, so
an interrupted write leaves an entry without a checksum, never a wrong one.

Size: an entry is `128 + 4 * layers * dim` bytes plus a 65-byte checksum
(BEATs-base and EAT-base: 13 x 768, 40,064 bytes; EAT-large: 25 x 1024,
102,528 bytes; `channel=both` doubles `dim`), 44 KB on a 4 KB-block file
system for BEATs/EAT-base; one entry per clip and setting (encoder weights,
front end, pooling, clip length, channel). Nothing is evicted: entries of
old settings, or of clips rewritten since (the key holds the file's size
and modification time), stay until the folder is deleted.
`cache_size(root)` gives the entries and bytes of a folder.

An entry is used only when its bytes match the checksum and it holds a
finite array of the expected shape. Anything else (a bit flip, a file
overwritten in place, a half-copied cache, a NaN) is logged as a warning
naming the file and the clip, and the clip is encoded again: a damaged
entry would otherwise feed training with values off by orders of
magnitude (issue 28: 1.8e15 after 16 overwritten bytes) without a word.
"""

import collections
import hashlib
import io
import logging
from pathlib import Path

import numpy as np

from asd_keras.utils.io import atomic_path

logger = logging.getLogger(__name__)

CHECKSUM_SUFFIX = ".sha256"


class EmbeddingCache:
    """Checksummed `(layers, dim)` arrays, one entry per key.

    Args:
        root: str or Path. The cache folder (created on the first write).
        num_layers: int. Rows of every entry (`layers` above).
    """

    def __init__(self, root, num_layers):
        self.root = Path(root)
        self.num_layers = int(num_layers)

    def file(self, key):
        """The `.npy` file of an entry."""
        return self.root / key[:2] / f"{key}.npy"

    def _checksum_file(self, key):
        return self.file(key).with_suffix(CHECKSUM_SUFFIX)

    def _discard(self, key, clip, problem):
        logger.warning(
            "Embedding cache entry '%s' (clip '%s') %s; encoding the clip again. (To clear "
            "the cache delete '%s'; cache_dir=none bypasses it.)", self.file(key), clip,
            problem, self.root)

    def load(self, key, clip):
        """The entry's array, or None (a miss, or a damaged entry: warned).

        Args:
            key: str. The entry's key (a hex digest).
            clip: str. The clip the entry belongs to, for the warning.
        """
        path = self.file(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            self._discard(key, clip, f"cannot be read ({error.strerror})")
            return None
        try:
            recorded = self._checksum_file(key).read_text().strip()
        except OSError:
            self._discard(key, clip, "has no checksum (its write was interrupted)")
            return None
        if hashlib.sha256(data).hexdigest() != recorded:
            self._discard(key, clip, "does not match its checksum (changed or damaged on "
                                     "disk)")
            return None
        try:
            value = np.load(io.BytesIO(data), allow_pickle=False)
        except (OSError, ValueError) as error:
            self._discard(key, clip, f"is not a NumPy array file ({error})")
            return None
        if value.dtype != np.float32 or value.ndim != 2 or value.shape[0] != self.num_layers:
            self._discard(key, clip, f"holds a {value.dtype} array of shape {value.shape}, "
                                     f"not ({self.num_layers}, dim) float32")
            return None
        if not np.isfinite(value).all():
            self._discard(key, clip, "holds non-finite values")
            return None
        return value

    def load_many(self, keys, clips, select=None):
        """`load` of every key; entries whose `dim` differs from most are
        dropped too (warned), so that the rows can be stacked.

        Args:
            keys: list of str.
            clips: list of str, aligned with `keys` (for warnings).
            select: list of int or None. Keep only these rows (layers) of
                each entry, so that memory holds what the caller asked for
                rather than every layer of every clip.

        Returns:
            list of arrays or None, aligned with `keys`.
        """
        rows = []
        for key, clip in zip(keys, clips):
            value = self.load(key, clip)
            rows.append(value if value is None or select is None else value[select])
        self.drop_other_shapes(rows, keys, clips)
        return rows

    def drop_other_shapes(self, rows, keys, clips, shape=None):
        """Sets to None (with a warning) the rows whose shape is not `shape`
        (None: the most common shape among the rows). Rows may be a
        selection of an entry's layers (`load_many(select=...)`); the
        warning names the entries' full shapes, `(num_layers, dim)`."""
        shapes = collections.Counter(r.shape for r in rows if r is not None)
        if shape is None:
            if len(shapes) < 2:
                return
            shape = shapes.most_common(1)[0][0]
        for i, row in enumerate(rows):
            if row is not None and row.shape != shape:
                self._discard(keys[i], clips[i],
                              f"holds an array of shape {(self.num_layers,) + row.shape[1:]}, "
                              f"but the encoder gives {(self.num_layers,) + tuple(shape[1:])}")
                rows[i] = None

    def store(self, key, value):
        """Writes an entry (array, then checksum), each file atomically.

        Raises:
            OSError: naming the cache folder and the fix when it cannot be
                written.
        """
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(value, np.float32))
        data = buffer.getvalue()
        path, checksum = self.file(key), self._checksum_file(key)
        try:
            # The old checksum goes first: a write interrupted from here on
            # leaves an entry without one (encoded again), never one whose
            # checksum vouches for other bytes.
            checksum.unlink(missing_ok=True)
            with atomic_path(path, suffix=".npy") as tmp:
                Path(tmp).write_bytes(data)
            with atomic_path(checksum, suffix=CHECKSUM_SUFFIX) as tmp:
                Path(tmp).write_text(hashlib.sha256(data).hexdigest() + "\n")
        except OSError as error:
            raise OSError(
                f"Cannot write the embedding cache entry '{path}' ({error.strerror or error})."
                f" Set cache_dir to a writable folder, or cache_dir=none.") from error


def cache_size(root):
    """`(entries, bytes)` of a cache folder (both 0 when it does not exist);
    bytes count both files of every entry, as stored (not on-disk blocks)."""
    root = Path(root)
    if not root.is_dir():
        return 0, 0
    entries = total = 0
    for path in root.glob("*/*"):
        if path.suffix == ".npy":
            entries += 1
        if path.suffix in (".npy", CHECKSUM_SUFFIX):
            total += path.stat().st_size
    return entries, total
