"""A light reverse-mode autograd: Tensor, Function and no_grad.

Every primitive is a :class:`Function` with a ``forward`` over backend arrays and a hand-derived
``backward`` that maps the gradient of its output(s) to the gradients of its inputs (a
vector-Jacobian product). ``Function.apply`` records a node per call; ``Tensor.backward`` walks
the nodes in reverse topological order and *sums* the gradients that reach a tensor along
different paths (a tensor used twice, like Hyena's gated stream, gets both contributions).

The gradients a ``backward`` receives are **read-only**: one array may be shared with another
input's gradient (``Add`` hands the same ``g`` to both operands) or owned by the caller of
``Tensor.backward(grad)``. A backward computes new arrays and never edits its inputs in place. With
:func:`set_readonly_gradients` on (the test suite turns it on; so does ``MINIHYENA_READONLY_GRADS=1``)
they arrive as non-writeable NumPy views, so an in-place edit raises instead of corrupting a gradient.
"""
from __future__ import annotations

import contextvars
import os

import numpy as np

from .backends import Backend, get_backend

__all__ = ["Tensor", "Function", "Context", "no_grad", "is_grad_enabled", "set_readonly_gradients"]

_grad_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("minihyena_grad", default=True)
_readonly_grads = os.environ.get("MINIHYENA_READONLY_GRADS") == "1"


def set_readonly_gradients(enabled: bool = True) -> bool:
    """Hand every ``Function.backward`` its incoming gradients as non-writeable views (NumPy arrays only;
    CuPy arrays have no such flag), so that an in-place edit fails loudly. Returns the previous setting."""
    global _readonly_grads
    previous, _readonly_grads = _readonly_grads, bool(enabled)
    return previous


def _readonly(g):
    if not isinstance(g, np.ndarray) or not g.flags.writeable:
        return g
    view = g.view()  # the caller's array keeps its own flags
    view.flags.writeable = False
    return view


def is_grad_enabled() -> bool:
    """False inside ``with no_grad():``."""
    return _grad_enabled.get()


class no_grad:
    """Context manager: ops inside it record no graph (inference, optimiser updates)."""

    def __enter__(self):
        self._token = _grad_enabled.set(False)
        return self

    def __exit__(self, *exc) -> None:
        _grad_enabled.reset(self._token)


class Context:
    """What one call of a Function remembers for its backward: a node of the graph."""

    __slots__ = ("fn", "backend", "inputs", "needs_input_grad", "saved", "out_meta", "freed", "__dict__")

    def __init__(self, fn, backend: Backend, inputs, needs_input_grad):
        self.fn = fn
        self.backend = backend
        # one entry per positional argument: None (no gradient wanted), a leaf Tensor, or the
        # (node, output index) that produced a non-leaf input. Holding the edge rather than the
        # Tensor lets intermediate arrays be freed unless a backward saved them.
        self.inputs = inputs
        self.needs_input_grad = needs_input_grad
        self.saved = ()
        self.out_meta = ()  # (shape, dtype) of each output, to make zero gradients
        self.freed = False  # set once a backward without retain_graph has dropped what was saved

    @property
    def xp(self):
        """The array module (numpy or cupy) of this call's backend."""
        return self.backend.xp

    def save_for_backward(self, *arrays) -> None:
        self.saved = arrays


class Function:
    """Base class of every primitive. Subclasses define two static methods:

    * ``forward(ctx, *args, **kwargs) -> array or tuple of arrays`` where Tensor arguments
      arrive as backend arrays;
    * ``backward(ctx, *grad_outputs) -> gradient or tuple of gradients``, one per positional
      argument (``None`` for arguments that are not differentiable; trailing ones may be left out).
      ``grad_outputs`` are read-only (see the module docstring): compute new arrays from them.
    """

    @staticmethod
    def forward(ctx: Context, *args, **kwargs):  # pragma: no cover - interface
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, *grad_outputs):  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        backend = _common_backend(cls.__name__, args)
        arrays = [a.data if isinstance(a, Tensor) else a for a in args]
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        record = any(needs) and is_grad_enabled()
        ctx = Context(cls, backend, None, needs)
        out = cls.forward(ctx, *arrays, **kwargs)
        multi = isinstance(out, tuple)
        outs = out if multi else (out,)
        if record:
            ctx.inputs = tuple(_edge(a) for a in args)
            ctx.out_meta = tuple((o.shape, o.dtype) for o in outs)
        else:
            ctx = None
        tensors = tuple(Tensor._from_op(o, backend, ctx, i) for i, o in enumerate(outs))
        return tensors if multi else tensors[0]


def _common_backend(op: str, args) -> Backend:
    """The backend an op runs on: the inputs' backend; arrays of two devices are an error."""
    chosen = first = None
    for a in args:
        if not isinstance(a, Tensor):
            continue
        b = a.backend
        if chosen is None:
            chosen, first = b, a
        if b is chosen:
            continue
        if b.xp is not chosen.xp:
            raise ValueError(
                f"{op}: inputs live on two backends, {chosen.name!r} ({chosen.device}, {_array_type(first)}) and "
                f"{b.name!r} ({b.device}, {_array_type(a)}); move them to one with tensor.to(name) or module.to(name)"
            )
        if getattr(b, "priority", 0) > getattr(chosen, "priority", 0):
            chosen = b  # same arrays (e.g. numpy and numba): use the faster kernels
    return chosen if chosen is not None else get_backend()


def _array_type(t) -> str:
    cls = type(t.data)
    return f"{cls.__module__.split('.')[0]}.{cls.__name__}"


class Tensor:
    """An array of the current backend, with an optional gradient.

    ``Tensor(data, requires_grad=False, dtype=None, backend=None)``; ``data`` may be a list, a
    NumPy array or a backend array. Only floating tensors can require gradients.
    """

    __array_priority__ = 1000  # make `ndarray * Tensor` call Tensor.__rmul__
    __slots__ = ("data", "grad", "requires_grad", "backend", "_node", "_index", "name")

    def __init__(self, data, requires_grad: bool = False, dtype=None, backend=None):
        be = get_backend(backend)
        if isinstance(data, Tensor):
            data = data.data
        if not be.owns(data) and not isinstance(data, np.ndarray):
            data = np.asarray(data)
            if dtype is None and data.dtype == np.float64:
                dtype = np.float32  # Python floats default to float32, like the models
        self.data = be.asarray(data, dtype=dtype)
        self.backend = be
        self.grad = None
        self._node = None
        self._index = 0
        self.name = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _from_op(cls, data, backend: Backend, node: Context | None, index: int) -> Tensor:
        t = cls.__new__(cls)
        t.data, t.backend, t.grad, t.name = data, backend, None, None
        t._node, t._index = node, index
        t.requires_grad = node is not None
        return t

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if flag and not np.issubdtype(np.dtype(self.data.dtype), np.floating):
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.dtype}")
        self.requires_grad = flag
        return self

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return np.dtype(self.data.dtype)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, backend={self.backend.name!r}{grad})"

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied from the device if needed)."""
        return self.backend.to_numpy(self.data)

    def item(self) -> float:
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor._from_op(self.data, self.backend, None, 0)

    def to(self, backend) -> Tensor:
        """A copy on another backend (a leaf; keeps ``requires_grad``)."""
        be = get_backend(backend)
        if be is self.backend:
            return self
        data = self.data if be.xp is self.backend.xp else be.asarray(self.numpy())
        t = Tensor(data, backend=be)
        t.requires_grad = self.requires_grad
        return t

    # ------------------------------------------------------------------ backward
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``grad`` is the upstream gradient; it may be omitted for a tensor with one element.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad")
        xp = self.backend.xp
        if grad is None:
            if self.size != 1:
                raise ValueError(f"backward() without a gradient needs one element, got shape {self.shape}")
            grad = xp.ones(self.data.shape, dtype=self.data.dtype)
        else:
            grad = self.backend.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.data.dtype)
            if grad.shape != self.data.shape:
                raise ValueError(f"backward(): gradient shape {grad.shape} != tensor shape {self.shape}")
        if self._node is None:
            _accumulate_leaf(self, grad)
            return
        grads = {id(self._node): [None] * len(self._node.out_meta)}
        grads[id(self._node)][self._index] = grad
        for node in _reverse_topological(self._node):
            out_grads = grads.pop(id(node), None)
            if out_grads is None:
                continue
            if node.freed:
                raise RuntimeError(
                    f"backward() through {node.fn.__name__} a second time: its saved arrays were freed by the "
                    "first backward(); pass retain_graph=True to the first call"
                )
            out_grads = [
                g if g is not None else xp.zeros(shape, dtype=dtype)
                for g, (shape, dtype) in zip(out_grads, node.out_meta)
            ]
            if _readonly_grads:
                out_grads = [_readonly(g) for g in out_grads]
            in_grads = node.fn.backward(node, *out_grads)
            if not isinstance(in_grads, tuple):
                in_grads = (in_grads,)
            if len(in_grads) < len(node.inputs):  # trailing constant arguments need no gradient
                if any(node.needs_input_grad[len(in_grads):]):
                    raise RuntimeError(
                        f"{node.fn.__name__}.backward returned {len(in_grads)} gradients for {len(node.inputs)} inputs"
                    )
                in_grads = in_grads + (None,) * (len(node.inputs) - len(in_grads))
            for edge, g in zip(node.inputs, in_grads):
                if edge is None or g is None:
                    continue
                leaf = isinstance(edge, Tensor)
                shape = edge.shape if leaf else tuple(edge[0].out_meta[edge[1]][0])
                if tuple(g.shape) != shape:
                    raise RuntimeError(
                        f"{node.fn.__name__}.backward gave a gradient of shape {tuple(g.shape)} "
                        f"for an input of shape {shape}"
                    )
                if leaf:
                    _accumulate_leaf(edge, g)
                else:
                    parent, index = edge
                    slot = grads.setdefault(id(parent), [None] * len(parent.out_meta))
                    slot[index] = g if slot[index] is None else slot[index] + g
            if not retain_graph:
                node.saved = ()
                node.__dict__.clear()
                node.freed = True

    # ------------------------------------------------------------------ operators (see functional)
    def __add__(self, other):
        return F.add(self, other)

    def __radd__(self, other):
        return F.add(other, self)

    def __sub__(self, other):
        return F.sub(self, other)

    def __rsub__(self, other):
        return F.sub(other, self)

    def __mul__(self, other):
        return F.mul(self, other)

    def __rmul__(self, other):
        return F.mul(other, self)

    def __truediv__(self, other):
        return F.div(self, other)

    def __rtruediv__(self, other):
        return F.div(other, self)

    def __neg__(self):
        return F.mul(self, -1.0)

    def __matmul__(self, other):
        return F.matmul(self, other)

    def __rmatmul__(self, other):
        return F.matmul(other, self)

    def __getitem__(self, index):
        return F.getitem(self, index)

    def sum(self, axis=None, keepdims: bool = False):
        return F.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims: bool = False):
        return F.mean(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        return F.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def transpose(self, *axes):
        return F.transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None))

    def exp(self):
        return F.exp(self)

    def sin(self):
        return F.sin(self)


def _accumulate_leaf(t: Tensor, g) -> None:
    if t.grad is None:
        t.grad = g.astype(t.data.dtype, copy=True)  # own the memory: g may be shared with another input
    else:
        t.grad += g


def _edge(a):
    """How a node reaches one of its inputs in the backward pass (see ``Context.inputs``)."""
    if not isinstance(a, Tensor) or not a.requires_grad:
        return None
    return a if a._node is None else (a._node, a._index)


def _reverse_topological(root: Context) -> list[Context]:
    """Nodes reachable from ``root``, each after every node that consumes its outputs."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for edge in node.inputs:
            if isinstance(edge, tuple) and id(edge[0]) not in seen:
                stack.append((edge[0], False))
    order.reverse()
    return order


from . import functional as F  # noqa: E402  (operators above need it; functional needs Tensor)
