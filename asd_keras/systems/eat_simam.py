"""EAT fine-tuned with an evenly spaced filter bank and SimAM, kNN scoring.

Zhong et al., "An Enhanced Audio Feature Tailored for Anomalous Sound
Detection Based on Pre-trained Models" (DCASE 2024; methods.md §G): the
`finetuned_encoder` extractor (EAT with the linear filter bank m-FB, SimAM
on the filter banks, attentive statistics pooling, ArcFace on machine type
+ section + attributes, mixup and SpecAugment) and the `knn` backend per
section with separate source and target banks, the minimum over the two
domains, and a domain normalisation. The paper's "KNN with domain
normalization" is unspecified; the default is the local-density ratio of
"Keeping the Balance" (§F: each reference's distance is divided by its
distance to its nearest other reference among both domains), which uses
training clips only. GenRep's per-domain z-score (§B) uses the test clips'
own statistics, so it is transductive: `asd_keras.backends.knn.
transductive_domain_zscore` gives it for comparisons, never `score`.

`simam` takes one mode for every machine type (`none`, `global`,
`local`) or the paper's "customised" choice per machine type, a mapping
such as `{default: local, fan: global}`. The mapping needs one network per
machine type, so it sets `extractor_grouping=machine_type` and becomes
`machine_overrides` (the paper picks the mode from prior knowledge of each
machine type; methods.md §G).

    asd-keras train --system eat_simam preset=EAT_PRESET_DIR \\
        "simam={default: local, fan: global}" --data DEV --out RUN
"""

from asd_keras.systems.base import AnomalySystem
from asd_keras.systems.base import register_system


def customised_simam(config):
    """Turns a per-machine-type `simam` mapping into system keys.

    Args:
        config: dict of flat system keys whose `simam` is a mapping of
            machine type -> mode, with `default` for the others.

    Returns:
        A new dict: `simam` the default mode, each other machine type's mode
        in `machine_overrides`, and `extractor_grouping=machine_type`.
    """
    config = dict(config)
    modes = dict(config["simam"])
    if "default" not in modes:
        raise ValueError("A per-machine-type simam mapping needs a 'default' mode for the "
                         f"other machine types, e.g. {{default: local, fan: global}}; "
                         f"received {modes!r}.")
    grouping = config.get("extractor_grouping", "machine_type")
    if grouping == "all":
        raise ValueError(
            f"simam={modes!r} chooses a mode per machine type, which needs one network per "
            "machine type; use extractor_grouping=machine_type (or section), or one mode "
            "for all (simam=local).")
    overrides = {str(k): dict(v) for k, v in (config.get("machine_overrides") or {}).items()}
    for machine_type, mode in modes.items():
        if machine_type != "default":
            overrides.setdefault(str(machine_type), {})["simam"] = mode
    config.update(simam=modes["default"], machine_overrides=overrides,
                  extractor_grouping=grouping)
    return config


@register_system("eat_simam")
class EATSimAMSystem(AnomalySystem):
    """Fine-tuned EAT (m-FB + SimAM) embeddings, kNN per section."""

    DEFAULTS = {"extractor": "finetuned_encoder", "backend": "knn",
                "extractor_grouping": "all", "grouping": "section",
                "filter_bank": "linear", "simam": "local", "pooling": "asp",
                "loss": "arcface", "classes": "attribute", "k": 1, "metric": "cosine",
                "domains": "both", "local_density": "ratio", "density_k": 1,
                "threshold": "percentile", "threshold_quantile": 0.9, "seed": 1234}

    def __init__(self, config=None):
        config = dict(config or {})
        if isinstance(config.get("simam"), dict):
            config = customised_simam(config)
        super().__init__(config)
