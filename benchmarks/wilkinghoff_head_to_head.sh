#!/usr/bin/env bash
# Head-to-head, back to back on one machine: Wilkinghoff's ORIGINAL ICASSP 2023
# code (tf-keras, adapted only to read DCASE 2023-style folders of 4 s clips;
# see benchmarks/bench_wilkinghoff.py, steps 1-2) against `asd-keras train --system
# wilkinghoff` + `asd-keras score`, same clips, 10 epochs, one model.
#
# Time to a submission = every second from the Python start (TensorFlow import
# included) to the submission CSVs: the original's one process; asd-keras's
# `train --score-out` process (TWO_PROCESSES=1: `train`, then `score`).
#
# Bytecode: both venvs should hold compiled .pyc files, as after a plain `pip
# install` (`make install` asks uv for them). Where PYTHONDONTWRITEBYTECODE is
# set and the installer wrote none, every start compiles TensorFlow again (the
# original's time to a submission went from 248.3 s to 204.6 s with its venv
# compiled, 2-core AMD EPYC, 2026-12-07): `python -m compileall -q -j 2 VENV/lib`.
# The summary says how many compiled modules each TensorFlow install holds.
#
# The original is not in this repository: benchmarks/bench_wilkinghoff.py's
# docstring says how to fetch it, make its venv and adapt its main.py (steps
# 1-2); ORIG_SRC is the folder of the adapted *.py files, ORIG_PY its venv's
# python.
#
# Usage (quiet machine, nothing else running):
#   ORIG_SRC=... ORIG_PY=... bash benchmarks/wilkinghoff_head_to_head.sh
#   ORDER="ours original" ...             # asd-keras first
#   REPEATS=2 ...                         # alternate the two, twice
#
# Environment: DATA (the dev_data folder of machine types; default the
# synthetic set below), REPO (this checkout with its .venv), OUT (work and
# log folder, default runs/head_to_head), EPOCHS, OURS_EXTRA (more key=value
# overrides), TWO_PROCESSES=1 (train and score as two commands). The data:
#   .venv/bin/python -m asd_keras synth --out data/synthetic/head_to_head \
#     --layout dcase2023 --machines fan gearbox bearing slider ToyCar ToyTrain valve \
#     --seconds 4 --train 200 --target-train 10 --test 50 --seed 0
# (7 types x 210 training clips, 7 x 200 test clips).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${DATA:-$HERE/../data/synthetic/head_to_head/dev_data/raw}
REPO=${REPO:-$(cd "$HERE/.." && pwd)}
ORIG_SRC=${ORIG_SRC:?set ORIG_SRC to the adapted original (see the header)}
ORIG_PY=${ORIG_PY:?set ORIG_PY to the python of its venv}
OUT=${OUT:-$HERE/../runs/head_to_head}
EPOCHS=${EPOCHS:-10}
ORDER=${ORDER:-"original ours"}
REPEATS=${REPEATS:-1}
OURS_EXTRA=${OURS_EXTRA:-}
TWO_PROCESSES=${TWO_PROCESSES:-0}
STAMP="python3 -u $HERE/_stamp.py"

for need in "$DATA" "$ORIG_SRC/main.py" "$ORIG_PY" "$REPO/.venv/bin/python"; do
    [ -e "$need" ] || { echo "run_both.sh: '$need' is missing (see the header)." >&2; exit 2; }
done
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL=2
bytecode() {  # compiled modules of the TensorFlow package a python imports
    "$1" -c 'import importlib.util, pathlib; p = pathlib.Path(importlib.util.find_spec("tensorflow").origin).parent; print(sum(1 for _ in p.rglob("*.pyc")), "compiled modules in", p)'
}

wall() {  # seconds of "Elapsed (wall clock) time" in a /usr/bin/time -v log
    awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$1"
}
maxrss() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$1"; }

# Epoch seconds from a stamped log: the stamp of each epoch-end line minus the
# previous one (the first from its "Epoch 1/" line).
epochs() {
    awk '
        / Epoch 1\// && !start {start=$1}
        /[0-9]+\/[0-9]+ .*- [0-9.]+m?s.*loss/ {
            if (!start) next
            printf "%s%.1f", sep, $1 - (prev ? prev : start); sep=" "; prev=$1
        }
        END {print ""}' "$1"
}
fit_span() {  # from "Epoch 1/" to the last epoch-end line
    awk '/ Epoch 1\// && !start {start=$1} /[0-9]+\/[0-9]+ .*- [0-9.]+m?s.*loss/ {last=$1}
         END {if (start) printf "%.1f", last - start}' "$1"
}

run_original() {
    local dir=$OUT/original_$1
    rm -rf "$dir" && mkdir -p "$dir"
    # The original caches decoded clips to .npy in its working folder; a fresh
    # folder makes it decode the WAV files, as asd-keras does.
    ln -s "$DATA" "$dir/dev_data"
    cp "$ORIG_SRC"/*.py "$dir/"
    sed -i "s/^epochs = 10$/epochs = $EPOCHS/" "$dir/main.py"
    ( cd "$dir" && TF_USE_LEGACY_KERAS=1 /usr/bin/time -v -o time.txt \
        "$ORIG_PY" -u main.py 2>&1 | $STAMP > log.txt )
    ls "$dir"/teams/submission/team_fkie/anomaly_score_*.csv > /dev/null
    echo "original $1: wall $(wall "$dir/time.txt") s, fit $(fit_span "$dir/log.txt") s," \
         "peak RSS $(maxrss "$dir/time.txt") MB, epochs: $(epochs "$dir/log.txt")"
}

run_ours() {
    local dir=$OUT/ours_$1
    rm -rf "$dir" && mkdir -p "$dir"
    local train=(.venv/bin/python -u -m asd_keras train --system wilkinghoff --data "$DATA"
                 --out "$dir/run" --verbose 2 --force variant=icassp2023 epochs="$EPOCHS"
                 ensemble_size=1 clip_seconds=4 $OURS_EXTRA)
    if [ "$TWO_PROCESSES" = 1 ]; then
        ( cd "$REPO" &&
          /usr/bin/time -v -o "$dir/train_time.txt" "${train[@]}" 2>&1 \
              | $STAMP > "$dir/train_log.txt" &&
          /usr/bin/time -v -o "$dir/score_time.txt" .venv/bin/python -u -m asd_keras score \
              --run "$dir/run" --data "$DATA" --out "$dir/scores" --force \
              2>&1 | $STAMP > "$dir/score_log.txt" )
    else
        # One process: `train --score-out` scores the test clips after training.
        ( cd "$REPO" &&
          /usr/bin/time -v -o "$dir/train_time.txt" "${train[@]}" --score-out "$dir/scores" \
              2>&1 | $STAMP > "$dir/train_log.txt" )
    fi
    ls "$dir"/scores/anomaly_score_*.csv > /dev/null
    local t s=0 how
    t=$(wall "$dir/train_time.txt")
    if [ "$TWO_PROCESSES" = 1 ]; then
        s=$(wall "$dir/score_time.txt")
        how="train $t + score $s, peak RSS train $(maxrss "$dir/train_time.txt") MB / score $(maxrss "$dir/score_time.txt") MB"
    else
        how="train --score-out, peak RSS $(maxrss "$dir/train_time.txt") MB"
    fi
    echo "asd-keras $1: wall $(python3 -c "print(round($t + $s, 2))") s ($how)," \
         "fit $(fit_span "$dir/train_log.txt") s, epochs: $(epochs "$dir/train_log.txt")"
}

echo "CPU: $(lscpu | awk -F': +' '/Model name/ {print $2; exit}'), $(nproc) cores;" \
     "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bytecode: original $(bytecode "$ORIG_PY"); asd-keras $(bytecode "$REPO/.venv/bin/python")"
results=$OUT/summary.txt
: > "$results"
for r in $(seq 1 "$REPEATS"); do
    for who in $ORDER; do
        if [ "$who" = original ]; then run_original "$r"; else run_ours "$r"; fi | tee -a "$results"
    done
done
python3 - "$results" <<'EOF'
import re, sys, statistics
lines = open(sys.argv[1]).read().splitlines()
walls = {"original": [], "asd-keras": []}
for line in lines:
    who = line.split()[0]
    walls[who].append(float(re.search(r"wall ([0-9.]+) s", line).group(1)))
o, a = statistics.median(walls["original"]), statistics.median(walls["asd-keras"])
print(f"time to a submission (median): original {o:.1f} s, asd-keras {a:.1f} s; "
      f"speed-up {o / a:.2f}x (goal >= 1.5x)")
EOF
