"""A registry that scales: open time, memory and identify latency with 100 to 100,000 enrolled speakers.

Each registry holds the 20 real dsp20 speakers, enrolled with GE2E from 10 s of their take 1,
plus random speakers up to the size: random unit vectors (the search side does not care where a
vector came from) written straight into the current schema, each with 0.1 s of stored audio.
Each size runs in a fresh process, which loads the encoders (GE2E: the same at every size) and
opens the registry (the first load of every reference), then identifies 5-s clips of the real
speakers' take 5:

  embed    decoding aside, the GE2E embedding of the clip (the same at every size)
  search   `VoiceRegistry.rank`: the fused scores against every reference, top-k, the decision
  refresh  the next identify after another process enrolled one more speaker (incremental reload)

and reports p50/p99 over the queries, peak RSS, and whether every real speaker was named.
Enrollment throughput (real audio: every dsp20 take, 68 min) is measured into an empty
registry and into the largest one: enrolling stays linear in the files, whatever the size.

    python benchmarks/bench_registry.py                      # sizes 100, 10000, 100000
    python benchmarks/bench_registry.py --sizes 100,1000 --queries 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DSP20 = HERE.parent.parent / "shared" / "data" / "dsp20"
CACHE = HERE / ".cache" / "registry"
REAL = 20
DIM = 256

CHILD = r"""
import json, resource, subprocess, sys, time
import numpy as np
from speakerid.audio import load_audio
from speakerid.voices import VoiceRegistry

path, queries = sys.argv[1], json.loads(sys.argv[2])
t0 = time.perf_counter()
voices = VoiceRegistry(path, create=False)
voices.encoders
t1 = time.perf_counter()
names, _ = voices.reference_matrices()
opened = time.perf_counter() - t1
encoders = t1 - t0
clips = [(speaker, load_audio(f)[2 * 16000 : 7 * 16000]) for speaker, f in queries]
voices.rank(voices.embed([clips[0][1]]), 5.0)  # warm-up
embed, search, right = [], [], 0
for speaker, clip in clips:
    a = time.perf_counter()
    embedded = voices.embed([clip])
    b = time.perf_counter()
    answer = voices.rank(embedded, 5.0, top_k=3, threshold=-1)
    c = time.perf_counter()
    embed.append(b - a)
    search.append(c - b)
    right += answer.speaker == speaker
# another process enrolls one speaker; the next answer must see it
subprocess.run([sys.executable, "-c", "import sys; from speakerid.voices import VoiceRegistry; "
                "VoiceRegistry(sys.argv[1]).enroll('newcomer', [sys.argv[2]])", path, queries[0][1]], check=True)
a = time.perf_counter()
answer = voices.rank(voices.embed([clips[0][1]]), 5.0, top_k=3, threshold=-1)
refresh = time.perf_counter() - a - np.median(embed)
assert len(voices.reference_matrices()[0]) == len(names) + 1
voices.remove("newcomer")
print(json.dumps({"speakers": len(names), "open": opened, "encoders": encoders, "embed": embed, "search": search, "right": right,
                  "queries": len(clips), "refresh": refresh,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build(size: int, real_rows: list[tuple[str, np.ndarray, np.ndarray]], encoder: str) -> Path:
    """A registry of the real speakers (embedded by `encoder`) plus random ones up to `size`, cached between runs."""
    from speakerid.registry import Registry, encode_audio

    path = CACHE / f"registry-{size}-{encoder.replace('/', '_')}.db"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    Registry(tmp).close()
    import sqlite3

    db = sqlite3.connect(tmp)
    rng = np.random.default_rng(size)
    silence = encode_audio(np.zeros(1600, dtype=np.int16))
    with db:
        db.execute("INSERT INTO encoders (id, name, role, spec, dim, created) VALUES (1, ?, 'base', '{\"kind\": \"ge2e\"}', 256, "
                   "'now')", (encoder,))
        rows = []
        for i in range(size):
            if i < len(real_rows):
                name, audio, vector = real_rows[i]
                blob = encode_audio(audio)
            else:
                name, blob = f"random{i:06d}", silence
                vector = rng.normal(size=DIM)
                vector = (vector / np.linalg.norm(vector)).astype("<f4")
            rows.append((i + 1, name, blob, len(blob) and 0.1, vector.astype("<f4").tobytes()))
        db.executemany("INSERT INTO speakers (id, name, created, updated, generation) VALUES (?, ?, 'now', 'now', 1)",
                       [(i, name) for i, name, *_ in rows])
        db.executemany("INSERT INTO recordings (id, speaker_id, sha256, source, seconds, audio, created) "
                       "VALUES (?, ?, ?, 'bench.wav', ?, ?, 'now')", [(i, i, f"{i:064x}", s, blob) for i, _, blob, s, _ in rows])
        db.executemany("INSERT INTO embeddings (recording_id, encoder_id, vector) VALUES (?, 1, ?)",
                       [(i, v) for i, *_, v in rows])
        db.executemany("INSERT INTO refs (speaker_id, encoder_id, vector) VALUES (?, 1, ?)", [(i, v) for i, *_, v in rows])
        db.execute("UPDATE meta SET value = '1' WHERE key = 'generation'")
    db.close()
    os.replace(tmp, path)
    return path


def enroll_throughput(path: Path | None) -> dict:
    """Seconds to enroll every dsp20 take (a copy of `path`, or an empty registry), in a fresh process."""
    target = CACHE / "enroll-target.db"
    for leftover in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
        leftover.unlink(missing_ok=True)
    if path is not None:
        import shutil

        shutil.copy(path, target)
    code = ("import json, sys, time\nfrom speakerid.voices import VoiceRegistry\nv = VoiceRegistry(sys.argv[1])\n"
            "v.encoders\nt = time.perf_counter()\nr = v.enroll_folder(sys.argv[2], progress=False)\n"
            "print(json.dumps({'seconds': time.perf_counter() - t, 'files': sum(x.added for x in r)}))")
    out = subprocess.run([sys.executable, "-c", code, str(target), str(DSP20)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,10000,100000")
    parser.add_argument("--queries", type=int, default=60)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    import torch

    from speakerid.audio import load_audio, to_int16
    from speakerid.encoders import Ge2eEncoder

    speakers = sorted(p for p in DSP20.iterdir() if p.is_dir())[:REAL]
    encoder = Ge2eEncoder("cpu")
    real_rows = []
    for folder in speakers:
        audio = load_audio(folder / "take01.flac")[: 10 * 16000]
        real_rows.append((folder.name, to_int16(audio), encoder.embed(audio)))
    queries = [(f.name, str(f / "take05.flac")) for f in speakers]
    queries = (queries * (args.queries // len(queries) + 1))[: args.queries]

    print(f"machine: {os.cpu_count()} CPU cores, {'CUDA' if torch.cuda.is_available() else 'no GPU'}, torch "
          f"{torch.__version__}, torch threads {torch.get_num_threads()}; {args.queries} queries of 5 s per size")
    rows = []
    for size in sizes:
        path = build(size, real_rows, encoder.name)
        out = subprocess.run([sys.executable, "-c", CHILD, str(path), json.dumps(queries)], capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        ms = lambda values, q: 1000 * float(np.percentile(values, q))
        rows.append([f"{r['speakers']:,}", f"{r['encoders']:.2f} s", f"{r['open']:.2f} s", f"{r['rss_mib']:.0f}", f"{ms(r['embed'], 50):.1f}",
                     f"{ms(r['embed'], 99):.1f}", f"{ms(r['search'], 50):.2f}", f"{ms(r['search'], 99):.2f}",
                     f"{1000 * r['refresh']:.0f}", f"{r['right']}/{r['queries']}"])
    print("\n| speakers | load encoders | open: load references | peak RSS MiB | embed p50 ms | embed p99 ms | search p50 ms | search p99 ms "
          "| refresh after an enrollment ms | real speakers named |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")

    print("\nenrolling every dsp20 take (100 files, 68 min of audio):")
    print("| into | seconds | files/s | audio min per s |")
    print("|---|---:|---:|---:|")
    for label, path in (("an empty registry", None), (f"{sizes[-1]:,} speakers", CACHE / f"registry-{sizes[-1]}.db")):
        r = enroll_throughput(path)
        print(f"| {label} | {r['seconds']:.1f} | {r['files'] / r['seconds']:.2f} | {68.2 / r['seconds']:.2f} |")


if __name__ == "__main__":
    main()
