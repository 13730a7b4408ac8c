"""What the benchmarks print about the machine they ran on, and how they time."""

import platform
import resource
import time


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags():
    """The instruction-set extensions that change TensorFlow's CPU kernels (and whether its
    oneDNN graph rewrite is on by default: AVX512-VNNI/BF16 or AMX)."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return " ".join(flag for flag in wanted if flag in present) or "none of " + \
                        ",".join(wanted)
    except OSError:
        pass
    return "unknown"


def hardware_line():
    """'<CPU model> [<flags>]': what every printed number should be read against."""
    return f"{cpu_name()} [{cpu_flags()}]"


def peak_rss_mib():
    """This process's peak resident memory so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_time(fn, repeats):
    """Median wall seconds of `repeats` calls of `fn`, after one untimed call (trace, warm-up)."""
    import numpy as np

    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))
