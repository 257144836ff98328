"""Import TensorFlow with stderr closed: its C++ start-up chatter (oneDNN notice, CUDA probing) ignores
TF_CPP_MIN_LOG_LEVEL and would bury the one line a user needs, or draw over the progress bar when a local
worker process (--direct_running_mode=multi_processing) prints it. `igaudit --debug` keeps it (IGAUDIT_DEBUG).

A local worker process shares the launcher's terminal, so Ctrl-C reaches it too: its KeyboardInterrupt is
not news (the launcher prints the one line, pipeline/interrupts.py), so it dies without a traceback."""
from __future__ import annotations

import os
import sys

DEBUG_ENV = "IGAUDIT_DEBUG"


def import_tensorflow_quietly() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf
        tf.config.list_physical_devices()  # device probing (cuInit) prints too
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def in_local_worker_process() -> bool:
    """A Beam SDK worker started as a subprocess by a local runner (it gets its control address this way)."""
    return bool(os.environ.get("CONTROL_API_SERVICE_DESCRIPTOR")) and not os.environ.get(DEBUG_ENV)


def quiet_keyboard_interrupt() -> None:
    """Let this process die of Ctrl-C without printing a traceback (other exceptions print as usual). Works
    from any thread (a worker imports igaudit on a bundle thread), unlike a signal handler."""
    default = sys.excepthook

    def hook(kind, value, tb):
        if not issubclass(kind, KeyboardInterrupt):
            default(kind, value, tb)
    sys.excepthook = hook
