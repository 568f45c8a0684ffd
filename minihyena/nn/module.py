"""Module and Parameter: named trainable state, train/eval, saving and moving between backends."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..autograd import Tensor
from ..backends import get_backend

DTYPES = ("float32", "float64")  # the dtypes a model computes in (the Numba kernels exist for these)


def check_dtype(dtype, owner: str = "dtype") -> np.dtype:
    """``dtype`` as a NumPy dtype if it is one a model computes in (:data:`DTYPES`), else a ValueError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"{owner} must be one of {', '.join(DTYPES)}, got {dtype!r}") from None
    if dt.name not in DTYPES:
        raise ValueError(f"{owner} must be one of {', '.join(DTYPES)}, got {dt.name}")
    return dt


class Parameter(Tensor):
    """A leaf Tensor that a Module trains (``requires_grad`` is always True)."""

    __slots__ = ()

    def __init__(self, data, dtype=None, backend=None):
        super().__init__(data, requires_grad=True, dtype=dtype, backend=backend)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype}, backend={self.backend.name!r})"


class Module:
    """Base class of every layer. Subclasses assign Parameters, buffers (constant Tensors registered
    with :meth:`register_buffer`) and sub-Modules as attributes, and define ``forward``."""

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_buffers", [])

    def register_buffer(self, name: str, value) -> None:
        """A constant Tensor that moves with the module but is not trained or saved (it is rebuilt
        from the configuration)."""
        setattr(self, name, value if isinstance(value, Tensor) else Tensor(value))
        if name not in self._buffers:
            self._buffers.append(name)

    def forward(self, *args, **kwargs):  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ traversal
    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Module) for v in value):
                for i, v in enumerate(value):
                    yield f"{name}.{i}", v

    def modules(self) -> Iterator[Module]:
        yield self
        for _, child in self.named_children():
            yield from child.modules()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """``(dotted.name, Parameter)``: this module's own parameters, then each child's (recursively),
        both in attribute-definition order; list items are numbered (``blocks.0.``)."""
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child.named_parameters(prefix + name + ".")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.parameters()))

    # ------------------------------------------------------------------ modes and gradients
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        clear_grads(self.parameters())

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameter values as NumPy arrays, keyed by dotted name."""
        return {name: p.numpy().copy() for name, p in self.named_parameters()}

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """``(dotted.name, buffer)`` for this module's buffers, then each child's (recursively)."""
        for name in self._buffers:
            yield prefix + name, getattr(self, name)
        for name, child in self.named_children():
            yield from child.named_buffers(prefix + name + ".")

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy values into the parameters (keeping each parameter's backend and dtype). A key naming a
        buffer sets that buffer (a value that differs from the rebuilt one, e.g. imported)."""
        own = dict(self.named_parameters())
        buffers = dict(self.named_buffers())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own and k not in buffers]
        if strict and (missing or unexpected):
            raise ValueError(f"load_state_dict: missing parameters {missing[:5]}, unexpected {unexpected[:5]}")
        targets = {**own, **{k: b for k, b in buffers.items() if k in state}}
        values = {}
        for name, p in targets.items():  # check everything before changing anything
            if name not in state:
                continue
            value = np.asarray(state[name])
            if value.shape != p.shape:
                raise ValueError(f"load_state_dict: {name} has shape {value.shape} in the state but {p.shape} in the model")
            values[name] = value
        for name, value in values.items():
            p = targets[name]
            p.data = p.backend.asarray(np.array(value, dtype=p.dtype))  # a copy: the state stays the caller's
            p.grad = None

    def to(self, backend=None, dtype=None) -> Module:
        """Move every parameter and buffer to ``backend`` and/or cast floating ones to ``dtype`` (one of
        :data:`DTYPES`), in place."""
        if dtype is not None:
            dtype = check_dtype(dtype, f"{type(self).__name__}.to: dtype")
        be = get_backend(backend) if backend is not None else None
        for m in self.modules():
            tensors = [p for p in vars(m).values() if isinstance(p, Parameter)]
            tensors += [getattr(m, name) for name in m._buffers]
            for t in tensors:
                target = be or t.backend
                data = t.data if target.xp is t.backend.xp else target.asarray(t.numpy())
                if dtype is not None and np.issubdtype(t.dtype, np.floating):
                    data = data.astype(dtype)
                t.data, t.backend, t.grad = data, target, None
        return self

    @property
    def dtype(self):
        params = self.parameters()
        return params[0].dtype if params else np.dtype(np.float32)

    @property
    def backend(self):
        params = self.parameters()
        return params[0].backend if params else get_backend()


def clear_grads(params) -> None:
    """Drop the gradient of every parameter in ``params`` (``Module.zero_grad`` for a list a caller holds:
    collecting a model's parameters walks all its modules)."""
    for p in params:
        p.grad = None
