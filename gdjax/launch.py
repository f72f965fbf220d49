"""``python -m gdjax.launch [--coordinator H:P --num_processes N --process_id I] script.py
[script flags]``: start JAX's distributed runtime (:func:`gdjax.distributed.initialize`), then
run ``script.py`` as ``python script.py [script flags]`` would. One command per host; without
the flags JAX reads them from the environment (SLURM, Open MPI, Cloud TPU)."""

from gdjax.distributed import main

if __name__ == "__main__":
    main()
