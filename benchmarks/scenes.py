"""Throughput of the procedural world on one thread, and its class statistics.

Usage: taskset -c 0 python benchmarks/scenes.py [--stats N]

Prints scenes/s for 64x64 and 128x128 at a few batch sizes (best of 5 runs after a warm-up;
the renderer is numpy and single-threaded), then the pixel fraction and presence rate of each
class over N scenes (default 2000) of seed 0.
"""

import argparse
import time

import numpy as np

from gdjax import scenes


def throughput(size: int, n: int, repeats: int = 5) -> tuple[float, float]:
    """Best scenes/s over ``repeats`` runs: by wall clock, and by this process's CPU time (which
    a machine shared with other jobs disturbs less)."""
    scenes.render(0, min(n, 64), size)  # warm-up: builds the cached textures
    wall = cpu = np.inf
    for r in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        scenes.render(r, n, size)
        wall = min(wall, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    return n / wall, n / cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stats", type=int, default=2000, help="scenes for the class table")
    args = parser.parse_args()
    print(
        f"{'size':>5} {'batch':>6} {'scenes/s (wall)':>16} {'scenes/s (cpu)':>15} {'ms/scene':>9}"
    )
    for size, batches in ((64, (16, 256, 2048)), (128, (16, 256, 1024))):
        for n in batches:
            wall, cpu = throughput(size, n)
            print(f"{size:>5} {n:>6} {wall:>16.0f} {cpu:>15.0f} {1000 / wall:>9.3f}")
    if args.stats:
        _, labels = scenes.render(0, args.stats)
        freq = scenes.class_frequencies(labels, len(scenes.LABELS))
        print(f"\nclass statistics over {args.stats} scenes of seed 0 at 64x64")
        print(f"{'label':>3} {'name':<10} {'pixels %':>8} {'present %':>9}")
        for k, (name, _) in enumerate(scenes.LABELS):
            present = (labels == k).any((1, 2)).mean()
            print(f"{k:>3} {name:<10} {100 * freq[k]:>8.2f} {100 * present:>9.1f}")


if __name__ == "__main__":
    main()
