"""Peak memory of a whole dissection of the demo models against the sample count.

    python -m benchmarks.memory --samples 1000,10000 [--outdir out/bench-memory]

Runs ``examples/dissect.py`` (demo GAN ``layer4`` + demo segmenter, defaults otherwise) once
per sample count in a child process and samples its ``/proc/<pid>/status`` every 0.1 s.
Reports the peak resident set (``VmHWM``: everything resident, including the pages of the
cache's memory-mapped ``.npy`` files that the kernel may drop at any time) and the peak
anonymous memory (``RssAnon``: the process's own heap, what must stay flat), in MiB, and the
wall time. The cache files are left in ``--outdir`` (delete it afterwards).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time


def _status(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                    out[key] = int(value.split()[0]) / 1024  # kB -> MiB
    except FileNotFoundError:
        pass
    return out


def measure(samples: int, outdir: str, extra=()) -> dict:
    shutil.rmtree(outdir, ignore_errors=True)
    argv = [sys.executable, "examples/dissect.py", f"--outdir={outdir}", f"--samples={samples}",
            "--xla_cache=", *extra]  # fmt: skip
    env = dict(os.environ, GDJAX_PROGRESS="0")
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = {"VmHWM": 0.0, "RssAnon": 0.0, "RssFile": 0.0}
    while proc.poll() is None:
        for key, value in _status(proc.pid).items():
            if key in peak:
                peak[key] = max(peak[key], value)
        time.sleep(0.1)
    err = proc.stderr.read().decode()
    if proc.returncode:
        raise SystemExit(f"dissection of {samples} samples failed:\n{err[-3000:]}")
    return {"samples": samples, "seconds": time.perf_counter() - start, **peak}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", default="1000,10000")
    ap.add_argument("--outdir", default=os.path.join("out", "bench-memory"))
    a = ap.parse_args(argv)
    print(f"{'samples':>8} {'peak RSS':>10} {'peak anon':>10} {'peak file':>10} {'wall':>8}")
    for n in (int(s) for s in a.samples.split(",")):
        r = measure(n, os.path.join(a.outdir, str(n)))
        print(f"{n:>8} {r['VmHWM']:>7.0f} MiB {r['RssAnon']:>6.0f} MiB {r['RssFile']:>6.0f} MiB "
              f"{r['seconds']:>6.0f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
