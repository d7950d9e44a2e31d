"""SIGTERM during training (cluster preemption, ``scancel``, a Kubernetes pod eviction): finish the iteration,
save a checkpoint every rank agrees on, exit with :data:`PREEMPTED_EXIT_CODE` (docs/ENGINE.md "Preemption").

The signal may reach one rank, some, or all of them (torchrun forwards it to every worker; SLURM signals the
whole job step). A rank's handler only sets a flag; once per iteration the flags are combined with an
all-reduce (:meth:`StopSignal.requested`), so every rank stops after the same iteration and takes part in the
same checkpoint (its state gathers every rank's RNG).
"""
import signal
import threading

import torch

from .. import dist as comm

__all__ = ['PREEMPTED_EXIT_CODE', 'Preempted', 'StopSignal']

# 128 + SIGTERM: what a shell, SLURM and Kubernetes report for a process ended by SIGTERM, so a scheduler
# sees "terminated by its signal" (requeue) rather than an error (exit 1), and a wrapper script can tell the
# two apart. The run is not finished: running the same command again auto-resumes from the checkpoint.
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM


class Preempted(SystemExit):
    """Raised by the training loop after the preemption checkpoint; the process exits with its code (143)."""

    def __init__(self, iteration, path):
        super().__init__(PREEMPTED_EXIT_CODE)
        self.iteration, self.path = iteration, path


class StopSignal:
    """Context manager: while active, SIGTERM sets a flag instead of killing the process.

    Installed only from the main thread (Python delivers signals there); elsewhere it is inert and
    :meth:`requested` stays False. The previous handler is restored on exit.
    """

    def __init__(self, signals=(signal.SIGTERM,)):
        self.signals, self.received, self._old = tuple(signals), None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
        return False

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signal.Signals(signum).name

    def requested(self):
        """True on every rank when any rank received the signal. Collective: every rank calls it once per
        iteration, in the same place of the loop."""
        local = torch.tensor([1.0 if self.received else 0.0])
        return bool(comm.all_reduce_mean(local).item() > 0)
