"""Weight streaming (the thesis's answer to a ~1 GB device): only the layer being run has its weights on the device.

`StreamingWeights` is the weights mapping a model reads. `w[key]` uploads that tensor when the layer asks for it;
the device array dies with the op call that used it and its buffer goes back to the runtime's pool, so the
device holds the activations plus about one layer's weights. Iterating (`keys`, `values`, `items`) yields the
host arrays: the models' weight checks read only `.shape` and `.dtype`, and must not upload everything.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class StreamingWeights(Mapping):
    def __init__(self, rt, host: dict, dtype=None):
        self.rt, self.host = rt, host
        self.dtype = np.dtype(dtype) if dtype is not None else None
        self.uploaded_bytes = 0     # host -> device traffic, for reports

    def __getitem__(self, key):
        a = self.host[key]
        if self.dtype is not None:
            a = a.astype(self.dtype)
        self.uploaded_bytes += a.nbytes
        return self.rt.to_device(a)

    def __contains__(self, key) -> bool:
        return key in self.host

    def __iter__(self):
        return iter(self.host)

    def __len__(self) -> int:
        return len(self.host)

    def values(self):
        return self.host.values()

    def items(self):
        return self.host.items()
