"""Two processes under jax.distributed (localhost, CPU) dissect, learn ACE α and
sweep single-unit ablations with the bytes of one process; a killed process stops the other
with a clear message, and a relaunch resumes where each stopped."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from gdjax import distributed

# One process of a run: argv = outdir, processes, process id, port, log, xla cache dir.
# HANG=<pass name>: process 1 stops (sleeps) in that pass after its first checkpoint, so the
# test can kill it there.
WORKER = """
import json, os, sys, time, atexit, faulthandler, signal
faulthandler.register(signal.SIGUSR1)  # stacks on demand, when debugging a hang
outdir, nproc, pid, port, log, xla = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \\
    sys.argv[4], sys.argv[5], sys.argv[6]
from gdjax import compile_cache, distributed
if nproc > 1:
    distributed.initialize(f"localhost:{port}", nproc, pid, heartbeat_seconds=10)
compile_cache.enable(xla)
import jax
from gdjax import dissect, proggan, segmenter as seglib
from gdjax.dissect import passes
from gdjax.dissect.settings import Settings
from gdjax.world import train_segmenter as segtrain
seg = seglib.from_config(segtrain.demo_config(stem=(8, 8, 8), planes=(8, 8, 8, 8),
                                              depths=(1, 1, 1, 1), dim=8), key=jax.random.key(0))
gen = proggan.init((16, 16, 16, 8, 8, 8), seed=0)
passes.stats_batch = lambda n, grid: 8  # 4 batches per pass: 2 per process
starts, plain = {}, passes.batches
def logged(arrays, batch_size, desc, start_at=0, ready=None):
    starts.setdefault(desc, start_at)
    for start, batch in plain(arrays, batch_size, desc, start_at, ready):
        if os.environ.get("HANG") == desc and pid == 1 and start > 0:
            open(log + ".hang", "w").close()
            time.sleep(600)
        yield start, batch
passes.batches = logged
atexit.register(lambda: open(log, "w").write(json.dumps(starts)))
settings = Settings(layers=("layer4",), samples=32, batch_size=8, micro=4)
dissect.dissect(outdir, gen, seg, settings, checkpoint_seconds=0)
# ACE's sets and the single-unit sweep, each process its share of the batches.
import numpy as np
from gdjax.intervene import ablate, ace
cfg = ace.Config(search_size=24, train_size=8, eval_size=4, inference_batch_size=4,
                 train_batch_size=2, train_update_freq=2, train_epochs=1)
module, params = gen
fns = ace.segmenter_fns(seg, 1, 2)
res = ace.optimize(module, params, fns, cfg, progress=False, workdir=outdir + "/ace")
base, ablated = ablate.sweep(module, params, lambda im: seglib.segment(seg, im, 2),
                             proggan.sample_z(12, 3, 16), "layer4", 12, batch_size=4, show=False)
if distributed.is_main():
    np.savez(outdir + "/intervene.npz", base=base, ablated=ablated, **res._asdict())
"""
PASS = "layer4 IoU counts, top-k"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


class Worker:
    """One worker process; its stderr goes to ``<log>.err``."""

    def __init__(self, outdir, nproc, pid, port, log, xla, hang=None):
        env = dict(os.environ, GDJAX_PROGRESS="0", XLA_FLAGS="")
        env.pop("HANG", None)
        if hang:
            env["HANG"] = hang
        argv = [sys.executable, "-c", WORKER, str(outdir), str(nproc), str(pid), str(port),
                str(log), str(xla)]  # fmt: skip
        self.err = f"{log}.err"
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err)

    def wait(self, timeout=600) -> int:
        return self.proc.wait(timeout=timeout)

    def stderr(self) -> str:
        with open(self.err) as f:
            return f.read()


def outputs(outdir):
    out = {"dissect.json": (outdir / "dissect.json").read_bytes()}
    with np.load(outdir / "layer4" / "stats.npz") as f:
        out |= {f"stats/{k}": f[k].tobytes() for k in f.files}
    for name in ("main", "train"):
        for f in (outdir / "cache" / name).glob("*.npy"):
            out[f"cache/{name}/{f.name}"] = f.read_bytes()
    with np.load(outdir / "intervene.npz") as f:
        out |= {f"intervene/{k}": f[k].tobytes() for k in f.files}
    return out


@pytest.mark.slow
def test_two_processes_match_one_and_resume_after_a_kill(tmp_path):
    xla = tmp_path / "xla"  # compiled programs shared by the runs
    one = tmp_path / "one"
    ref = Worker(one, 1, 0, 0, tmp_path / "one.log", xla)
    assert ref.wait() == 0, ref.stderr()[-2000:]

    # Process 1 is killed in the last pass, after its first checkpoint.
    two, port = tmp_path / "two", _free_port()
    logs = [tmp_path / f"p{i}.log" for i in range(2)]
    procs = [Worker(two, 2, i, port, logs[i], xla, hang=PASS) for i in range(2)]
    deadline = time.time() + 600
    while not os.path.exists(str(logs[1]) + ".hang") and time.time() < deadline:
        assert procs[1].proc.poll() is None, procs[1].stderr()[-2000:]
        time.sleep(0.1)
    procs[1].proc.send_signal(signal.SIGKILL)
    assert procs[1].wait() == -signal.SIGKILL
    rc, err = procs[0].wait(timeout=120), procs[0].stderr()
    assert rc == 1, err[-2000:]
    assert "ProcessLost: process 0 of 2: process 1 stopped" in err, err[-2000:]
    assert "Relaunch every process with the same command to resume" in err
    assert not (two / "dissect.json").exists()
    saved = two / "layer4" / "passes" / "iou_counts" / "process-1-of-2" / "8" / "state.npz"
    assert saved.exists()  # process 1's checkpoint after its first batch of the pass

    # Relaunched: same bytes as one process; each process resumed the pass at its last
    # checkpoint, and the networks' cache was not written again.
    written = {f: f.stat().st_mtime_ns for f in (two / "cache").glob("*/*.npy")}
    port = _free_port()
    procs = [Worker(two, 2, i, port, logs[i], xla) for i in range(2)]
    for p in procs:
        assert p.wait() == 0, p.stderr()[-2000:]
    starts = [json.loads(log.read_text()) for log in logs]
    assert starts[0][PASS] == 8 and starts[1][PASS] == 8
    assert len(written) == 6
    assert written == {f: f.stat().st_mtime_ns for f in (two / "cache").glob("*/*.npy")}
    a, b = outputs(one), outputs(two)
    assert a.keys() == b.keys()
    want = {"stats/iou", "cache/main/act_layer4.npy", "intervene/alpha", "intervene/ablated"}
    assert want <= a.keys()
    for k in a:
        assert a[k] == b[k], k


def test_shares_split_every_item_once_in_order(monkeypatch):
    for n, procs in [(10, 3), (2, 4), (64, 2), (0, 2)]:
        monkeypatch.setattr(distributed, "count", lambda procs=procs: procs)
        spans = [distributed.share(n, p) for p in range(procs)]
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
        sizes = [b - a for a, b in spans]
        assert max(sizes) - min(sizes) <= 1


def test_one_process_synchronisation_is_free():
    assert distributed.count() == 1 and distributed.is_main()
    distributed.barrier("nothing to wait for", timeout=0)
    tree = {"a": np.arange(3), "b": np.ones((2, 2), np.int32)}
    stacked = distributed.allgather(tree)
    assert stacked["a"].shape == (1, 3) and stacked["b"].shape == (1, 2, 2)
    assert distributed.reduce(tree, lambda x, y: 1 / 0) is tree
    assert distributed.first(lambda: 7) == 7
