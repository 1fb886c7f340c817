"""Class labels of the auxiliary classification task.

The embedding systems are trained to classify clips into classes derived
from their metadata. The granularity decides how much the model must learn
about the machine sound (paper Table II):

- `"one"`: a single class for everything;
- `"machine_type"`: one class per machine type;
- `"section"`: machine type + section;
- `"per_section"`: one model per section, each with a single class;
- `"attribute"`: machine type + section + attribute string (+ the domain
  flag, as the ICASSP 2023 code joins `section###attributes###source`;
  reference wilkinghoff.md §1 "Labels"). `noAttribute` files form one class
  per section and domain.
"""

import numpy as np
import pandas as pd

GRANULARITIES = ("one", "machine_type", "section", "per_section", "attribute")


def section_keys(table):
    """`<machine_type>_<section>` for every row: the scoring groups."""
    return table["machine_type"].astype(str) + "_" + table["section"].astype(str)


def class_keys(table, granularity="attribute", domain_flag=True):
    """The class name of every row of a `read_dataset` table.

    Args:
        table: DataFrame with machine_type, section, domain, attribute_string.
        granularity: one of `GRANULARITIES`.
        domain_flag: bool. Append the domain to attribute classes.

    Returns:
        pandas Series of str, aligned with `table`.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(
            f"classes must be one of {GRANULARITIES}; received {granularity!r}."
        )
    if granularity in ("one", "per_section"):
        return pd.Series("all", index=table.index)
    if granularity == "machine_type":
        return table["machine_type"].astype(str)
    keys = section_keys(table)
    if granularity == "section":
        return keys
    attributes = table["attribute_string"].fillna("").astype(str)
    if (attributes == "").any() and table["split"].eq("train").any():
        missing = table.loc[attributes == "", "file_name"].head(3).tolist()
        raise ValueError(
            "classes='attribute' needs attribute strings in the file names, "
            f"but e.g. {missing} have none. Use classes='section' for this data."
        )
    keys = keys + "###" + attributes
    if domain_flag:
        keys = keys + "###" + table["domain"].fillna("unknown").astype(str)
    return keys


class ClassEncoder:
    """Maps class names to indices; fitted on the training rows.

    Args:
        granularity: str, see `GRANULARITIES`.
        domain_flag: bool.
    """

    def __init__(self, granularity="attribute", domain_flag=True):
        self.granularity = granularity
        self.domain_flag = bool(domain_flag)
        self.classes = []

    def fit(self, table):
        """Learns the sorted list of classes present in `table`.

        Args:
            table: a clip table (`asd_keras.data.read_dataset`).

        Returns:
            This encoder.
        """
        keys = class_keys(table, self.granularity, self.domain_flag)
        self.classes = sorted(set(keys))
        return self

    @property
    def num_classes(self):
        """Number of classes seen by `fit`."""
        return len(self.classes)

    def transform(self, table):
        """Class index of each clip of `table`.

        Args:
            table: a clip table with the columns of this encoder's granularity.

        Returns:
            An int array, one index per row.

        Raises:
            ValueError: a clip's class was not seen by `fit`.
        """
        keys = class_keys(table, self.granularity, self.domain_flag)
        index = {name: i for i, name in enumerate(self.classes)}
        unknown = sorted(set(keys) - set(index))
        if unknown:
            raise ValueError(
                f"Classes {unknown[:5]} were not seen in training "
                f"({self.num_classes} known). Train on data that covers them."
            )
        return keys.map(index).to_numpy(np.int32)

    def get_config(self):
        return {"granularity": self.granularity, "domain_flag": self.domain_flag,
                "classes": list(self.classes)}

    @classmethod
    def from_config(cls, config):
        encoder = cls(config["granularity"], config["domain_flag"])
        encoder.classes = list(config["classes"])
        return encoder
