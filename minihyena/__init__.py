"""minihyena: the Hyena architecture from scratch in NumPy, with a light autograd and swappable backends."""
import os as _os

# Before NumPy loads OpenBLAS, which reads this once: an idle BLAS thread sleeps after 2^4 cycles instead
# of spinning for 2^28 (about 0.1 s), time in which it took a core from the compiled kernels that run
# between two matrix products (a Numba train step at B x L = 1 x 8192 on 2 cores: 698 -> 563 ms). A value
# already set is kept; after an earlier `import numpy` this has no effect (docs: Backends, Threads).
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
from .autograd import Context, Function, Tensor, is_grad_enabled, no_grad
from .backends import (
    BackendUnavailableError,
    available_backends,
    get_backend,
    known_backends,
    register_backend,
    use_backend,
)
from . import functional  # noqa: E402
from .checkpoint import load_model
from .generate import generate
from .nn.model import HyenaConfig, HyenaLM

__version__ = "0.1.0"

__all__ = [
    "HyenaConfig",
    "HyenaLM",
    "generate",
    "load_model",
    "Tensor",
    "Function",
    "Context",
    "no_grad",
    "is_grad_enabled",
    "functional",
    "available_backends",
    "known_backends",
    "get_backend",
    "use_backend",
    "register_backend",
    "BackendUnavailableError",
    "__version__",
]
