"""Downloads the official DCASE Task 2 datasets from Zenodo.

Record numbers and archive names are those of the official download scripts
(nttcslab/dcase2023_task2_baseline_ae `tools/data_download_20XX.sh`,
`data_download_2026*.sh`; reference dcase.md section 1). Sizes and md5
checksums are read from the Zenodo record API at download time, so replaced
archives (the `_r2` files) are verified against what Zenodo serves.
Downloads resume from `.part` files with HTTP Range requests, are verified,
then unzipped into `<out>/<split>_data/raw/<machine>/`.
"""

import hashlib
import json
import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from asd_keras.utils.io import atomic_write_text
from asd_keras.utils.progress import progress_bar

ZENODO_URL = "https://zenodo.org"

_DEV7 = ("bearing", "fan", "gearbox", "slider", "ToyCar", "ToyTrain", "valve")
_M2020 = ("ToyCar", "ToyConveyor", "fan", "valve", "slider", "pump")
_M2021 = ("fan", "gearbox", "pump", "slider", "ToyCar", "ToyTrain", "valve")
_EVAL2023 = ("bandsaw", "grinder", "shaker", "ToyDrone", "ToyNscale", "ToyTank",
             "Vacuum")
_EVAL2024 = ("3DPrinter", "AirCompressor", "Scanner", "ToyCircuit",
             "HoveringDrone", "HairDryer", "ToothBrush", "RoboticArm",
             "BrushlessMotor")
# The 2024 additional training archives carry their own suffixes (_r2 for
# the replaced ones).
_EVAL2024_TRAIN = tuple(
    f"{m}_train_r2" if m in ("3DPrinter", "RoboticArm") else f"{m}_train"
    for m in _EVAL2024
)
_EVAL2025 = ("ToyRCCar", "ToyPet", "HomeCamera", "AutoTrash", "Polisher",
             "ScrewFeeder", "BandSealer", "CoffeeGrinder")
_EVAL2026 = ("ToyDrone", "ToothBrush", "SewingMachine", "BlowerDustCollector",
             "Sander")

# year -> split -> list of (record, file-name template, machine types).
CATALOGUE = {
    2020: {
        "dev": [("3678171", "dev_data_{m}.zip", _M2020)],
        "eval": [("3727685", "eval_data_train_{m}.zip", _M2020),
                 ("3841772", "eval_data_test_{m}.zip", _M2020)],
    },
    2021: {
        "dev": [("4562016", "dev_data_{m}.zip", _M2021)],
        "eval": [("4660992", "eval_data_{m}_train.zip", _M2021),
                 ("4884786", "eval_data_{m}_test.zip", _M2021)],
    },
    2022: {
        "dev": [("6355122", "dev_{m}.zip", _DEV7)],
        "eval": [("6462969", "eval_data_{m}_train.zip", _DEV7),
                 ("6586456", "eval_data_{m}_test.zip", _DEV7)],
    },
    2023: {
        "dev": [("7882613", "dev_{m}.zip", _DEV7)],
        "eval": [("7830345", "eval_data_{m}_train.zip", _EVAL2023),
                 ("7860847", "eval_data_{m}_test.zip", _EVAL2023)],
    },
    2024: {
        "dev": [("10902294", "dev_{m}.zip", _DEV7)],
        "eval": [("11259435", "eval_data_{m}.zip", _EVAL2024_TRAIN),
                 ("11363076", "eval_data_{m}_test.zip", _EVAL2024)],
    },
    2025: {
        "dev": [("15097779", "dev_{m}.zip", _DEV7)],
        "eval": [("15392814", "eval_data_{m}_train.zip", _EVAL2025),
                 ("15519362", "eval_data_{m}_test.zip", _EVAL2025)],
    },
    2026: {
        # dev_ToyCar.zip was replaced by dev_ToyCar_r2.zip (reference 1.6).
        "dev": [("19336329", "dev_{m}.zip",
                 ("ToyCar_r2", "ToyCarEmu", "bearingEmu", "fan", "gearboxEmu",
                  "sliderEmu", "valveEmu"))],
        "eval": [
            ("20151556", "eval_data_{m}.zip", _EVAL2026),
            # Test record of reference 1.6; the archive names follow the
            # earlier years' pattern [inferred], and a missing name is
            # reported with the names the record does hold.
            ("20437238", "eval_data_{m}_test.zip", _EVAL2026),
        ],
    },
}


def _machine_of(entry):
    return entry.split("_train")[0].removesuffix("_r2")


def plan_download(year, split, machine_types=None):
    """Lists (record, archive name) pairs for a year and split."""
    try:
        entries = CATALOGUE[int(year)][split]
    except (KeyError, ValueError):
        raise ValueError(
            f"No DCASE Task 2 download for year={year!r}, split={split!r}; "
            f"years {sorted(CATALOGUE)}, splits 'dev' and 'eval'."
        ) from None
    plan = []
    known = set()
    for record, template, machines in entries:
        for machine in machines:
            known.add(_machine_of(machine))
            if machine_types and _machine_of(machine) not in machine_types:
                continue
            plan.append((record, template.format(m=machine)))
    unknown = sorted(set(machine_types or ()) - known)
    if unknown:
        raise ValueError(
            f"Machine type(s) {unknown} are not part of DCASE {year} {split}; "
            f"available: {sorted(known)}."
        )
    return plan


def _get_json(url, timeout):
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode())


def record_files(record, base_url=ZENODO_URL, timeout=60):
    """{file name: {"size", "md5", "url"}} of a Zenodo record."""
    url = f"{base_url.rstrip('/')}/api/records/{record}"
    try:
        data = _get_json(url, timeout)
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as error:
        raise ConnectionError(
            f"Cannot read Zenodo record {record} from {url}: {error}. Check "
            "the network connection and try again."
        ) from None
    files = {}
    for entry in data.get("files", []):
        checksum = entry.get("checksum", "")
        algorithm, _, digest = checksum.partition(":")
        links = entry.get("links", {})
        files[entry["key"]] = {
            "size": int(entry["size"]),
            "md5": digest if algorithm == "md5" else None,
            "url": links.get("content")
            or links.get("self")
            or f"{base_url.rstrip('/')}/records/{record}/files/{entry['key']}",
        }
    return files


def _md5(path, chunk=1 << 20):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(url, dest, size=None, md5=None, timeout=60, progress=True):
    """Downloads `url` to `dest`, resuming a `.part` file, then verifies it.

    Raises:
        ValueError: if the size or md5 does not match (the partial file is
            removed so the next try starts afresh).
        ConnectionError: on network failure (the partial file is kept so
            the next try resumes).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is None or offset < size:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if offset and response.status != 206:
                    offset = 0  # the server ignored Range: start again
                mode = "ab" if offset else "wb"
                with open(part, mode) as f, progress_bar(
                    total=size,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    enabled=progress,
                    leave=False,
                ) as bar:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        f.write(block)
                        bar.update(len(block))
        except (urllib.error.URLError, OSError) as error:
            raise ConnectionError(
                f"Download of {url} stopped: {error}. Run the same command "
                f"again to resume from {part.stat().st_size if part.exists() else 0} bytes."
            ) from None
    actual = part.stat().st_size
    if size is not None and actual != size:
        part.unlink()
        raise ValueError(
            f"'{dest.name}' has {actual} bytes but Zenodo lists {size}; the "
            "partial file was removed. Run the command again."
        )
    if md5 is not None and _md5(part) != md5:
        part.unlink()
        raise ValueError(
            f"'{dest.name}' failed its md5 check; the file was removed. Run "
            "the command again."
        )
    os.replace(part, dest)
    return dest


def _safe_extract(archive, target):
    target = Path(target).resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            path = (target / member.filename).resolve()
            if target != path and target not in path.parents:
                raise ValueError(
                    f"'{archive}' contains the unsafe path {member.filename!r}; "
                    "refusing to unzip it."
                )
        zf.extractall(target)


def download(year, split, out, machine_types=None, base_url=ZENODO_URL,
             keep_archives=False, progress=True):
    """Downloads, verifies and unzips one year's dev or eval data.

    Args:
        year: int. 2020-2026.
        split: str. "dev" or "eval" (eval = additional training data and
            the test data).
        out: str or Path. Dataset root; clips land in
            `<out>/<split>_data/raw/<machine>/`.
        machine_types: list of str, optional. Subset of machine types.
        base_url: str. Zenodo server (a local server in tests).
        keep_archives: bool. Keep the zip files after unzipping.
        progress: bool.

    Returns:
        Path of the folder of machine-type folders.
    """
    plan = plan_download(year, split, machine_types)
    out = Path(out)
    target = out / f"{split}_data" / "raw"
    archives = out / ".archives"
    target.mkdir(parents=True, exist_ok=True)
    listings = {}
    for record, name in progress_bar(plan, desc=f"DCASE{year} {split}", unit="archive",
                                     enabled=progress):
        stamp = archives / f"{name}.done"
        if stamp.exists():
            continue
        if record not in listings:
            listings[record] = record_files(record, base_url)
        files = listings[record]
        if name not in files:
            raise ValueError(
                f"Zenodo record {record} has no '{name}'; it holds "
                f"{sorted(files)}. The archive may have been replaced: "
                "download it by hand and unzip it into "
                f"'{target}'."
            )
        meta = files[name]
        archive = download_file(meta["url"], archives / name, meta["size"],
                                meta["md5"], progress=progress)
        _safe_extract(archive, target)
        atomic_write_text(stamp, json.dumps(meta))
        if not keep_archives:
            archive.unlink()
    return target
