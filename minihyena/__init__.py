"""minihyena: the Hyena architecture from scratch in NumPy, with a light autograd and swappable backends."""
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
