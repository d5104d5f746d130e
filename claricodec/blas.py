"""numpy's BLAS held to one thread while Whisper's log-mel features are computed.

faster-whisper's feature extractor ends in a numpy matrix product (mel filters times the
spectrogram). numpy's OpenBLAS runs it on all cores and then keeps its worker threads
spinning for a while, and on a 2-core machine they take the cores from the CTranslate2
pass that follows: Whisper's states of a 12 s window took 0.108 s instead of 0.057 s
(session 28), so encoding ran at about half its speed. On one thread the product is as
fast for this size, gives the same features bit for bit, and leaves nothing spinning.
The limit holds only inside the `with` block, so a program that uses this library keeps
its own BLAS settings.
"""
from __future__ import annotations

import threading

_controller = None
_lock = threading.Lock()


def one_blas_thread():
    """A context manager: BLAS libraries loaded in this process run on one thread inside it."""
    global _controller
    from threadpoolctl import ThreadpoolController
    with _lock:
        if _controller is None:
            _controller = ThreadpoolController()  # finds the loaded libraries once (~1 ms)
    return _controller.limit(limits=1, user_api="blas")
