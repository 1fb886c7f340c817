"""Dataset tables of a run: reading one or more data folders, and the
labelled test clips that evaluations need."""

from pathlib import Path

import pandas as pd

from asd_keras.data.layouts import read_dataset


def read_tables(data, layout=None, machine_types=None):
    """The clips of one or more data folders as one table.

    Several folders (a year's `dev_data` and `eval_data`) train one run
    together; they must hold the same layout (DCASE year or plain).

    Args:
        data: str, Path or list of them.
        layout: str or None. The layout, detected when None.
        machine_types: list of str or None. Keep only these machine types.

    Returns:
        DataFrame of `read_dataset` rows, one per clip.

    Raises:
        ValueError: the folders hold different layouts (naming them), or
            `read_dataset` rejects a folder.
    """
    folders = [data] if isinstance(data, (str, Path)) else list(data)
    if not folders:
        raise ValueError("No data folder given; pass at least one.")
    table = pd.concat([read_dataset(folder, layout=layout, machine_types=machine_types)
                       for folder in folders], ignore_index=True)
    if table["layout"].nunique() > 1:
        raise ValueError(
            f"The data folders {[str(f) for f in folders]} hold different layouts "
            f"({sorted(table['layout'].unique())}); use one year at a time.")
    return table


def labelled_test(table, purpose, drop_unlabelled=False):
    """The test rows of `table` with a normal/anomaly label, as integers.

    Args:
        table: dataset table.
        purpose: str. What needs the labels, for the message (e.g. "The
            search").
        drop_unlabelled: bool. Leave unlabelled test clips out (evaluation
            data beside development data) instead of refusing them.

    Returns:
        DataFrame of the labelled test rows, re-indexed from 0, `label` int.

    Raises:
        ValueError: there is no test clip, or (unless `drop_unlabelled`)
            some test clip has no label; the message names a few and the fix.
    """
    test = table[table["split"] == "test"].copy()
    labels = pd.to_numeric(test["label"], errors="coerce")
    missing = labels.isna()
    if missing.any() and not drop_unlabelled:
        names = test.loc[missing, "file_name"].head(5).tolist()
        raise ValueError(
            f"{purpose} needs labelled test clips; {int(missing.sum())} of {len(test)} have "
            f"no normal/anomaly label (e.g. {names}). Use development data, or give the "
            "labels (plain layout: labels.csv).")
    test = test[~missing].reset_index(drop=True)
    if test.empty:
        raise ValueError(f"{purpose} needs labelled test clips; the data hold none. Use "
                         "development data.")
    test["label"] = labels[~missing].astype(int).to_numpy()
    return test
