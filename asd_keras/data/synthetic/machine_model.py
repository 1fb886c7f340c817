"""The interface every synthetic machine's physical sound model follows."""


class _Machine:
    """A physical sound model.

    Subclasses define `instance(rng)`, which draws one machine's physical
    parameters (a section), and `render(inst, level, anomaly, severity, n,
    sr, rng)`, which returns `n` samples for attribute `level`.
    """

    attribute_name = "att"
    source_levels = (1, 2, 3)
    target_levels = (5,)
    anomaly_kinds = ()
