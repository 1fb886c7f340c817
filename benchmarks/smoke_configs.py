"""The paper-size configurations that `smoke_full.py` and `gpu_check.py` run.

Each entry is one `FULL=1` configuration of an experiment: the system and
the keys that make it paper-sized, the synthetic data it is smoked on, and
the size of the whole paper run (models trained, clips per model, epochs,
clips scored) from which the wall time of that run is projected.

Full-run sizes (the published data sets; reference dcase.md §1):
- DCASE 2020 dev (GAN detectors): 6 machine types, about 3,350 training
  clips each (20,119 in all), 10 s (ToyCar 11 s), one model per type.
- DCASE 2022 (dense AE 2022, Shin & Lee, Wilkinghoff ICASSP 2023): 7
  types x 3 sections x 1,000 training clips (990 source + 10 target) per
  split, 10 s; dev test 600 clips per type. Shin & Lee train on the
  additional-training sections 03-05 (3,000 clips per type); Wilkinghoff
  trains one model on dev and additional training data (6,000 per type).
- DCASE 2023/2024/2026 dev: 7 types x 1,000 training clips and 200 test
  clips, one section per type, 10 s (DCASE 2026: two channels).

Sizes of the smoke itself (`DATA`): a few dozen clips of the paper's length,
enough for three batches of the paper's batch size after `drop_remainder`.
`tiny` overrides make the same configuration small enough for a CPU test
(`--smoke`).
"""

import dataclasses

DEV_TRAIN_2022 = 3000   # training clips per type and split (3 sections x 1,000)
DEV_TEST_2022 = 600
DEV_TRAIN_2023 = 1000
DEV_TEST_2023 = 200
DCASE2020_TRAIN = 20119  # all six types
DCASE2020_TEST = 7000    # about 1,200 per type in dev
TYPES = 7


@dataclasses.dataclass(frozen=True)
class FullRun:
    """The size of a whole `FULL=1` run, for the wall-time projection.

    Attributes:
        models: int. Models trained (types x conditions x trials).
        clips_per_model: int. Training clips of each model.
        scored: int. Clips embedded or scored in the whole run (training
            clips for the scorers plus test clips).
        vectors_per_clip: int. Training samples per clip (frame vectors
            of the dense AE and GANs; 1 for clip-level models).
        validation_split: float. Share of the samples held out.
    """

    models: int
    clips_per_model: int
    scored: int
    vectors_per_clip: int = 1
    validation_split: float = 0.0


@dataclasses.dataclass(frozen=True)
class SmokeConfig:
    """One paper-size configuration.

    Attributes:
        name: str. Unique; `smoke_full.py NAME` runs it alone.
        family: str. Groups the rows of the table.
        system: str. Registered system name.
        config: dict. Keys that make the system paper-sized.
        data: str. Key of `DATA`.
        full: FullRun.
        machine_types: tuple or None. Restrict the training data.
        train_per_section: int or None. Training clips kept per section
            (frozen encoders: their bank does not need more for a smoke).
        tiny: dict. Overrides for `--smoke`.
        paper: str. Where the size comes from.
    """

    name: str
    family: str
    system: str
    config: dict
    data: str
    full: FullRun
    machine_types: tuple = None
    train_per_section: int = None
    tiny: dict = dataclasses.field(default_factory=dict)
    paper: str = ""

    @property
    def trained(self):
        """Whether the configuration trains a network."""
        return self.system not in ("frozen_encoder", "residual_view", "logmel_stats")


# Synthetic data of each layout: `asd-keras synth` arguments. Full size: the
# paper's clip length; tiny: 1 s clips.
DATA = {
    "dcase2022": {"layout": "dcase2022", "machines": ["fan", "valve"], "train": 11,
                  "target_train": 1, "test": 1},
    "dcase2022_ae": {"layout": "dcase2022", "machines": ["fan"], "train": 60,
                     "target_train": 1, "test": 1},
    "dcase2023": {"layout": "dcase2023", "machines": ["fan", "valve"], "train": 33,
                  "target_train": 3, "test": 1},
    "dcase2020": {"layout": "dcase2020", "machines": ["fan"], "train": 12,
                  "target_train": 1, "test": 1},
    "dcase2026": {"layout": "dcase2026", "machines": ["fan"], "train": 6,
                  "target_train": 1, "test": 1},
}
TINY_DATA = {name: {**spec, "train": min(spec["train"], 6)} for name, spec in DATA.items()}

TINY_LOGMEL = {"clip_seconds": 1.0}
TINY_RESNET = {"clip_seconds": 1.0, "batch_size": 4, "depth": 18}
TINY_ENCODER = {"clip_seconds": 1.0, "num_frames": 112, "preset": "eat_small",
                "encoder": "eat"}


def _dense_ae():
    out = []
    for variant, data, train, test, epochs in (
            ("dcase2022", "dcase2022_ae", DEV_TRAIN_2022, DEV_TEST_2022, 100),
            ("dcase2023", "dcase2023", DEV_TRAIN_2023, DEV_TEST_2023, 100)):
        out.append(SmokeConfig(
            f"dense_ae_{variant}", "dense AE", "dense_ae",
            {"variant": variant, "epochs": epochs}, data,
            FullRun(TYPES, train, TYPES * (train + test), vectors_per_clip=309,
                    validation_split=0.1),
            machine_types=("fan",), tiny={"batch_size": 64, "steps_per_execution": 1},
            paper=f"DCASE {variant[-4:]} Keras baseline"))
    return out


def _wilkinghoff():
    return [SmokeConfig(
        "wilkinghoff_10s", "Wilkinghoff", "wilkinghoff",
        {"clip_seconds": 10.0, "epochs": 10, "batch_size": 64, "ensemble_size": 1},
        "dcase2022", FullRun(1, 2 * TYPES * DEV_TRAIN_2022,
                             2 * TYPES * (DEV_TRAIN_2022 + DEV_TEST_2022)),
        tiny={"clip_seconds": 1.0, "batch_size": 8},
        paper="ICASSP 2023: DCASE 2022 dev + additional training data")]


def _gans():
    return [SmokeConfig(
        name, "GAN detectors", name, {"epochs": 10, "batch_size": 64}, "dcase2020",
        FullRun(6, DCASE2020_TRAIN // 6, DCASE2020_TRAIN + DCASE2020_TEST,
                vectors_per_clip=309),
        machine_types=("fan",), tiny={"batch_size": 16},
        paper="de Oliveira Neto et al., Table 3 sizes, DCASE 2020 dev")
        for name in ("ganomaly", "skip_ganomaly", "egbad")]


def _proxy_ae():
    out = []
    for latent in (4, 8, 16):
        for hidden in (64, 128, 256):
            out.append(SmokeConfig(
                f"proxy_ae_l{latent}_h{hidden}", "proxy AE sweep", "dense_ae",
                {"latent_dim": latent, "hidden_units": hidden, "score": "mae",
                 "loss": "mae", "select": "min_loss", "validation_split": 0.0,
                 "epochs": 200}, "dcase2022_ae",
                FullRun(TYPES, DEV_TRAIN_2022, TYPES * (DEV_TRAIN_2022 + DEV_TEST_2022),
                        vectors_per_clip=309),
                machine_types=("fan",), tiny={"batch_size": 64, "steps_per_execution": 1},
                paper="Shin & Lee Table II, 200 epochs"))
    return out


def _resnets():
    out = []
    for system, family in (("resnet_ce", "ResNet CE"), ("resnet_arcface", "ResNet ArcFace"),
                           ("simclr", "SimCLR"), ("simsiam", "SimSiam")):
        for depth in (18, 34, 50, 101, 152):
            out.append(SmokeConfig(
                f"{system}_{depth}", family, system,
                {"depth": depth, "epochs": 200, "clip_seconds": 10.0, "batch_size": 32},
                "dcase2022",
                FullRun(TYPES, DEV_TRAIN_2022, TYPES * (DEV_TRAIN_2022 + DEV_TEST_2022)),
                machine_types=("fan",), tiny=TINY_RESNET,
                paper="Shin & Lee Tables III/V, 10 s, batch 32, 200 epochs"))
    return out


def _separators():
    out = []
    for blocks in (0, 1, 2, 4):
        for width in (64, 128):
            out.append(SmokeConfig(
                f"separation_n{blocks}_c{width}", "separation", "separation",
                {"num_blocks": blocks, "width": width, "epochs": 200, "clip_seconds": 10.0,
                 "segment_seconds": 2.0, "batch_size": 4,
                 "gradient_accumulation_steps": 4,
                 # One separator for both smoke types instead of one a type:
                 # the same network, batch and step; the projection still
                 # counts the paper's seven models (`FullRun`).
                 "extractor_grouping": "all"}, "dcase2022",
                FullRun(TYPES, DEV_TRAIN_2022, TYPES * (DEV_TRAIN_2022 + DEV_TEST_2022)),
                # One training clip a section (3 a type): fit embeds every
                # one of them, 17 s a 10 s clip at N = 4, C = 128.
                train_per_section=1, tiny={"clip_seconds": 1.0, "segment_seconds": 0.5},
                paper="Shin & Lee Table IV, 2 s segments, batch 4 as 4 micro-batches"))
    return out


def _frozen():
    out = []
    for name, encoder, preset in (("beats_iter3", "beats", "beats_iter3"),
                                  ("eat_base", "eat", "eat_base"),
                                  ("eat_large", "eat", "eat_large")):
        out.append(SmokeConfig(
            f"frozen_{name}", "frozen encoders", "frozen_encoder",
            {"encoder": encoder, "preset": preset, "clip_seconds": 10.0, "pooling": "mean",
             "backend": "mahalanobis", "grouping": "machine_type"}, "dcase2022",
            FullRun(0, 0, TYPES * (DEV_TRAIN_2022 + DEV_TEST_2022)),
            machine_types=("fan",), train_per_section=2, tiny=TINY_ENCODER,
            paper="Shin & Lee Table VI, 10 s"))
    out.append(SmokeConfig(
        "residual_view_beats", "Residual View", "residual_view",
        {"clip_seconds": 10.0}, "dcase2026",
        FullRun(0, 0, TYPES * (DEV_TRAIN_2023 + DEV_TEST_2023)),
        tiny=TINY_ENCODER, paper="Kim et al., DCASE 2026 dev, two channels, 10 s"))
    return out


def _eat_simam():
    return [SmokeConfig(
        "eat_simam_full", "EAT + m-FB + SimAM", "eat_simam",
        {"preset": "eat_base", "clip_seconds": 10.0, "epochs": 30, "batch_size": 32,
         "gradient_accumulation_steps": 4, "learning_rate": 1.0e-4, "layer_decay": 0.75,
         "normalisation": "auto", "filter_bank": "linear", "simam": "local"}, "dcase2023",
        FullRun(5, TYPES * DEV_TRAIN_2023, 5 * TYPES * (DEV_TRAIN_2023 + DEV_TEST_2023)),
        # One batch of 32 (one update an epoch): fit embeds every training
        # clip afterwards, 1.3 s a 10 s clip.
        train_per_section=16,
        tiny={"preset": "eat_small", "clip_seconds": 1.0, "batch_size": 8,
              "normalisation": "estimate", "layer_decay": 1.0},
        paper="Zhong et al., EAT-base fine-tuning, 5 conditions, DCASE 2024 dev size")]


CONFIGS = {c.name: c for c in (
    _dense_ae() + _wilkinghoff() + _gans() + _proxy_ae() + _resnets() + _separators()
    + _frozen() + _eat_simam())}


def select(names=None):
    """The configurations named (all when `names` is empty), in table order.

    Raises:
        ValueError: naming an unknown configuration and listing the known.
    """
    if not names:
        return list(CONFIGS.values())
    unknown = [n for n in names if n not in CONFIGS and not any(
        c.family == n for c in CONFIGS.values())]
    if unknown:
        raise ValueError(f"Unknown configuration(s) {unknown}; known: {sorted(CONFIGS)} "
                         f"or a family of {sorted({c.family for c in CONFIGS.values()})}.")
    return [c for c in CONFIGS.values() if c.name in names or c.family in names]
