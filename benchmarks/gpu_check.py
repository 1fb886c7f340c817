"""Checks a TensorFlow GPU install against every family at paper size.

    make gpu-check                     # every configuration + the demo trainings
    python benchmarks/gpu_check.py resnet_ce_152 --peak-tflops 19.5
    python benchmarks/gpu_check.py --smoke   # tiny sizes, on the CPU too

For users with a GPU build of TensorFlow. It runs the full-size smoke of
`smoke_full.py` (every `FULL=1` configuration: build, trace, a few training
steps at the paper's batch size, scoring, export; each in its own process)
and the two trainings of `make demo`, on the GPU, and prints one table:
samples/s and step time of training, peak GPU memory
(`tf.config.experimental.get_memory_info`) and the share of the GPU's peak
float32 rate that the training step reaches (FLOPs counted by TensorFlow's
profiler, see `smoke_full.py`; the peak comes from `--peak-tflops` or, for
the GPUs listed in `PEAK_TFLOPS`, from the device name).

Without a GPU it says so and exits 0. `--smoke` runs the same code at tiny
sizes on whatever device there is (peak host RSS stands in for GPU memory on
a CPU), which is how the test suite checks it.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import smoke_full  # noqa: E402
from smoke_configs import select  # noqa: E402

# Float32 (non-tensor-core) peak TFLOP/s of common data-centre GPUs, from the
# vendors' data sheets; a device not listed needs --peak-tflops.
PEAK_TFLOPS = {"A100": 19.5, "H100": 67.0, "V100": 15.7, "T4": 8.1, "L4": 30.3,
               "A10": 31.2, "L40": 90.5, "RTX 4090": 82.6, "RTX 3090": 35.6}

DEMO = (("dense_ae", "experiments/dense_ae_baseline/demo.yaml"),
        ("wilkinghoff", "experiments/wilkinghoff_demo/demo.yaml"))


def gpu_name():
    """The first GPU's device name, or None when TensorFlow sees no GPU."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("device_name", gpus[0].name)


def peak_tflops(name, given):
    """`given`, else the listed peak of the device `name`, else None."""
    if given:
        return float(given)
    for key, value in PEAK_TFLOPS.items():
        if name and key.lower() in name.lower():
            return value
    return None


def demo_trainings(smoke, work):
    """Times `asd-keras train` of the demo's two systems; returns rows."""
    data = Path(work) / "demo_data"
    size = (["--seconds", "1", "--train", "3", "--test", "1"] if smoke
            else ["--train", "30", "--test", "10"])
    subprocess.run([sys.executable, "-m", "asd_keras", "synth", "--out", str(data),
                    "--layout", "dcase2022", "--seed", "0", *size], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    for system, config in DEMO:
        cmd = [sys.executable, "-m", "asd_keras", "train", "--system", system, "--data",
               str(data / "dev_data"), "--out", str(Path(work) / system), "--config",
               str(ROOT / config), "--verbose", "0"]
        if smoke:
            cmd += ["epochs=1"] + (["clip_seconds=1.0"] if system == "wilkinghoff" else [])
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        rows.append({"name": f"demo {system}", "train_s": time.perf_counter() - start,
                     "status": "ok" if proc.returncode == 0 else
                     f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"})
    return rows


def table(records, peak):
    """The check's markdown table."""
    lines = ["| configuration | device | samples/s | step ms | peak memory MB | "
             "share of peak FLOP rate | status |", "|---|---|---|---|---|---|---|"]
    for r in records:
        step = r.get("s_per_step")
        rate = (r["batch"] / step) if step else None
        share = (r["train_flop_per_step"] / step / (peak * 1e12)
                 if step and peak and r.get("train_flop_per_step") else None)
        memory = r.get("gpu_peak_mb") or r.get("peak_rss_mb")
        kind = "GPU" if r.get("gpu_peak_mb") else "host RSS"
        lines.append("| {} | {} | {} | {} | {} | {} | {} |".format(
            r["name"], r.get("device", "-"), "-" if rate is None else f"{rate:,.1f}",
            "-" if step is None else f"{step * 1000:,.1f}",
            "-" if memory is None else f"{memory:,.0f} ({kind})",
            "-" if share is None else f"{share:.1%}",
            r["status"] if "train_s" not in r else f"{r['status']}, {r['train_s']:.1f} s"))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="configurations or families (default: all)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes; runs on the CPU when there is no GPU")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the GPU's peak float32 TFLOP/s (default: from its name)")
    parser.add_argument("--skip-demo", action="store_true",
                        help="leave out the demo's two trainings")
    parser.add_argument("--out", default=str(HERE / "results"),
                        help="folder of gpu_check.md")
    args = parser.parse_args(argv)
    try:
        specs = select(args.names)
    except ValueError as error:
        parser.error(str(error))
    name = gpu_name()
    if name is None and not args.smoke:
        print("No GPU is visible to TensorFlow (tf.config.list_physical_devices('GPU') is "
              "empty), so there is nothing to check. Install a GPU build (pip install "
              "'tensorflow[and-cuda]==2.21.*') on a machine with an NVIDIA GPU, or run "
              "with --smoke to try the check at tiny sizes on the CPU.")
        return 0
    peak = peak_tflops(name, args.peak_tflops)
    print(f"Device: {name or 'CPU (no GPU; --smoke)'}; peak float32 "
          f"{'unknown (pass --peak-tflops)' if name and peak is None else peak} TFLOP/s")
    data_root = ROOT / "data" / "synthetic" / ("smoke_full_tiny" if args.smoke
                                               else "smoke_full")
    smoke_full.make_data(data_root, args.smoke, specs)
    records = smoke_full.run_all(specs, data_root, args.smoke, 3, peak or smoke_full.GPU_TFLOPS)
    if not args.skip_demo:
        with tempfile.TemporaryDirectory() as work:
            records += demo_trainings(args.smoke, work)
    text = table(records, peak)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from asd_keras.utils.io import atomic_write_text

    atomic_write_text(out / ("gpu_check_smoke.md" if args.smoke else "gpu_check.md"),
                      f"Device: {name or 'CPU'}\n\n{text}\n")
    failed = [r["name"] for r in records if r["status"] != "ok"]
    if failed:
        print(f"FAILED: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
