"""The cores a reference script runs on: those this process may use (its CPU affinity, as
`taskset -c` sets it), which is what monoscope's engines use (Rust's
`std::thread::available_parallelism`). os.cpu_count() counts the whole machine, so under
`taskset` the references would run more threads than monoscope (scripts/cpu_scaling.sh)."""

import os


def usable_cores():
    """Cores in this process's CPU affinity (os.cpu_count() where the OS has none)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
