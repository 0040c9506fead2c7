"""Job functions for the benchmark (importable by multiprocessing workers and by dsage children)."""
import time


def noop(x):
    return None


def spin(seconds):
    """Burn about *seconds* of CPU in pure Python; return the CPU time used."""
    t0 = time.process_time()
    end = t0 + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return time.process_time() - t0


def mib(i):
    return bytes(1024 * 1024)
