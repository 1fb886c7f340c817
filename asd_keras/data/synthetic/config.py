"""`SynthConfig`: the size and shape of a synthetic dataset."""

import dataclasses


from asd_keras.data.dcase_naming import LAYOUTS
from asd_keras.data.synthetic.machines import DEFAULT_MACHINE_TYPES
from asd_keras.data.synthetic.machines import MACHINE_TYPES


@dataclasses.dataclass
class SynthConfig:
    """Size and shape of a synthetic dataset.

    Attributes:
        layout: str. One of `LAYOUTS`.
        machine_types: list of str. Subset of `MACHINE_TYPES`; defaults to
            `DEFAULT_MACHINE_TYPES`.
        seconds: float. Clip length.
        train: int. Source-domain training clips per section.
        target_train: int. Target-domain training clips per section.
        test: int. Test clips per section, domain and label (2020: per
            machine ID and label, twice this number).
        seed: int.
        sample_rate: int.
        eval: bool. Also write eval-style data (anonymised test names) and
            the official evaluator's ground-truth folders.
        background_gain: float. Background level relative to the machine
            in the source domain; the target domain's is 1.6 times larger.
        severity: tuple of float. Range of anomaly severities.
    """

    layout: str = "dcase2022"
    machine_types: tuple = DEFAULT_MACHINE_TYPES
    seconds: float = 10.0
    train: int = 50
    target_train: int = 3
    test: int = 10
    seed: int = 0
    sample_rate: int = 16000
    eval: bool = False
    background_gain: float = 0.5
    severity: tuple = (0.3, 0.7)

    def validate(self):
        """Checks every setting, before anything is written.

        Raises:
            ValueError: naming the setting, the value received and what is allowed.
        """
        if self.layout not in LAYOUTS:
            raise ValueError(
                f"Unknown layout {self.layout!r}; use one of {LAYOUTS}."
            )
        unknown = sorted(set(self.machine_types) - set(MACHINE_TYPES))
        if unknown or not self.machine_types:
            spelled = {m.lower(): m for m in MACHINE_TYPES}
            hints = [
                f"{u!r} -> {spelled[u.lower()]!r}"
                for u in unknown
                if u.lower() in spelled
            ]
            hint = f" (names are case-sensitive: {', '.join(hints)})" if hints else ""
            raise ValueError(
                f"Unknown synthetic machine type(s) {unknown or '(none)'}; "
                f"choose from {MACHINE_TYPES}{hint}."
            )
        if self.seconds * self.sample_rate < 4096:
            raise ValueError(
                f"seconds={self.seconds} is too short: a clip needs at least "
                f"{4096 / self.sample_rate:.2f} s."
            )
        if not 0 <= float(self.background_gain) < float("inf"):
            raise ValueError(
                f"background_gain must be a finite number >= 0; received "
                f"{self.background_gain!r}."
            )
        for name in ("train", "target_train", "test"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; received {getattr(self, name)}.")


# The 2026 layout's two microphones (see the module docstring).
# Background (pink, tonal bed, clanks) weights in the target domain; the
# source domain uses the plain sum (equal weights).
