"""Take each step's measurements off the training thread.

The measurements of step k (test loss and accuracy on their cadence, per-group norms,
histograms) see the weights just before update k. With ``StoreSettings.measure_in_background``
(the default) the training thread copies those weights into a shadow model (one fused copy, a few
microseconds for the modular models) and goes on with update k, while a worker thread measures the
copy: on a machine with a spare core (or a GPU) the test forward pass then costs the training loop
almost nothing. The numbers are the same bit for bit as measuring inline: the same operations on
the same values (``tests/runner/test_measuring.py``).

Without it (``false``), the live model is measured inline, before the update, as before.
"""

from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Callable

import torch

from runner.models.base import Classifier

#: Measure :attr:`StepMeasurer.target` (the weights before update ``step``) into buffer row
#: ``row``.
Measure = Callable[[int, int], None]


class StepMeasurer:
    """Runs ``measure(step, row)`` on :attr:`target` for each step, inline or on a worker thread.

    ``target`` is the model to measure: the live model (inline) or its shadow copy (background);
    build the meters on it, then :meth:`start`. ``submit`` returns once the weights may be
    updated; ``drain`` waits until every submitted measurement is in the buffers (call it before
    reading them, i.e. before each flush) and re-raises a worker's exception on the training
    thread; ``close`` stops the worker.
    """

    def __init__(self, model: Classifier, background: bool):
        self.background = background
        self.target = model
        self._measure: Measure | None = None
        self._error: BaseException | None = None
        self._pending = threading.Semaphore(1)  # one measurement in flight: one shadow copy
        if background:
            self.target = copy.deepcopy(model)  # deepcopy keeps tied parameters tied
            self.target.eval()
            # Parameters and buffers alike, refreshed by one fused copy per step.
            self._live = [*model.parameters(), *model.buffers()]
            self._copies = [*self.target.parameters(), *self.target.buffers()]
            self._jobs: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._work, name="cds-measure", daemon=True)

    def start(self, measure: Measure) -> None:
        self._measure = measure
        if self.background:
            self._thread.start()

    def submit(self, step: int, row: int) -> None:
        assert self._measure is not None, "start() first"
        if not self.background:
            self._measure(step, row)
            return
        self._pending.acquire()  # the previous measurement has finished with the shadow
        self._raise()
        with torch.no_grad():
            torch._foreach_copy_(self._copies, self._live)
        self._jobs.put((step, row))

    def drain(self) -> None:
        if self.background:
            self._pending.acquire()
            self._pending.release()
            self._raise()

    def close(self) -> None:
        """Stop the worker (after its current measurement); never raises, so that it may run
        while another exception is on its way out."""
        if self.background and self._thread.is_alive():
            self._pending.acquire()
            self._jobs.put(None)
            self._thread.join()
            self._pending.release()

    def _work(self) -> None:
        assert self._measure is not None
        # One intra-op thread here (a per-thread setting): the training thread keeps its own,
        # and a second OpenMP team would only fight it for the cores.
        torch.set_num_threads(1)
        while (job := self._jobs.get()) is not None:
            try:
                if self._error is None:
                    self._measure(*job)
            except BaseException as error:  # handed to the training thread by _raise
                self._error = error
            finally:
                self._pending.release()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
