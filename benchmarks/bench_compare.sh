#!/bin/sh
# Which chunk length, features and model: the `speakerid compare` studies quoted in README.md and
# docs/benchmarks.md, on dsp20 and so125. Resumable: run it again to finish an interrupted study.
#
#     sh benchmarks/bench_compare.sh [OUT]          # OUT defaults to benchmarks/.cache
#
# One torch thread per cell (the team's rule on the shared 2-core machine). The budget is
# wall-clock, so the machine's load is printed before and after: on a busy machine cells get
# fewer epochs, and each report.md gives the load average when each cell ended.
set -e
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/.cache}
DATA=../shared/data
SPEAKERID=${SPEAKERID:-speakerid}

machine() {
    python3 -c 'import os, time; print("machine: %d cores, load average %.1f %.1f %.1f, %s" % (os.cpu_count(), *os.getloadavg(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))'
}

export OMP_NUM_THREADS=1
machine
$SPEAKERID compare $DATA/dsp20 --out "$OUT/compare-dsp20" --chunks 3,5,10 --features mfcc,logmel,spectrogram \
    --models cnn,lstm,tdnn --budget 90s
machine
# so125 as published, its 12 FLAC sentences a speaker: a view of links, as other files have appeared
# in the shared folder (joined*.wav, made from the same sentences, would leak test speech into training).
if [ ! -d "$OUT/so125-flac" ]; then
    for folder in $DATA/so125/so*/; do
        speaker=$(basename "$folder")
        mkdir -p "$OUT/so125-flac/$speaker"
        ln -s "$(cd "$folder" && pwd)"/*.flac "$OUT/so125-flac/$speaker/"
    done
fi
$SPEAKERID compare "$OUT/so125-flac" --out "$OUT/compare-so125" --chunks 3,5,10 --features mfcc \
    --models cnn,lstm,tdnn --budget 2m
machine
