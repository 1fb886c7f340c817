"""The interface every synthetic machine's physical sound model follows."""

import abc


class _Machine(abc.ABC):
    """A physical sound model.

    An abstract base: subclasses define `instance(rng)`, which draws one machine's physical
    parameters (a section), and `render(inst, level, anomaly, severity, n,
    sr, rng)`, which returns `n` samples for attribute `level`.
    """

    attribute_name = "att"
    source_levels = (1, 2, 3)
    target_levels = (5,)
    anomaly_kinds = ()

    @abc.abstractmethod
    def instance(self, rng):
        """Draws one machine's physical parameters (one section's machine).

        Args:
            rng: a `numpy.random.Generator`.

        Returns:
            A dict of the parameters `render` reads.
        """

    @abc.abstractmethod
    def render(self, inst, level, anomaly, severity, n, sr, rng):
        """The machine's sound at one attribute level, normal or anomalous.

        Args:
            inst: the parameters drawn by `instance`.
            level: the attribute level (`source_levels` or `target_levels`).
            anomaly: one of `anomaly_kinds`, or None for a normal clip.
            severity: strength of the anomaly, in [0, 1].
            n: number of samples.
            sr: sample rate in Hz.
            rng: a `numpy.random.Generator`.

        Returns:
            A float array of `n` samples.
        """
