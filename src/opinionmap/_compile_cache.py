"""nutpie-compiled models that keep their machine code on disk between processes.

``nutpie.compile_pymc_model`` compiles a model in two steps: PyTensor turns the
log-density and its gradient into a numba function (kept in PyTensor's disk cache),
then nutpie wraps that function in two numba C callbacks (``numba.cfunc``), which
numba cannot cache: the wrappers are closures. Building them links the PyTensor
function's code into each wrapper and optimises and compiles the whole again, 4-10 s
of LLVM work per model on two cores, every time a process fits a model, even one it
fitted a minute earlier.

Here the wrappers are built from source text instead, with a key made of PyTensor's
own cache key of the function they call (which covers the graph and every constant
in it, the data included), the wrapper's text and the versions of nutpie, numba and
PyTensor. numba then keeps their compiled code in PyTensor's numba cache directory
and loads it in 0.2 s the next time the same model is compiled. They call the graph's
own numba function rather than PyTensor's Python-callable one, which only forwards to
it and is then never compiled: one link and optimisation of the whole code less per
model (:func:`_forwarded_to`). The wrappers do the
same as nutpie's (the text below mirrors nutpie 0.16's ``_make_c_logp_func`` and
``_make_c_expand_func``) and the draws are identical with and without the cache
(``tests/test_fit.py::test_a_model_loaded_from_the_compile_cache_gives_identical_draws``).

The wrappers replace two private helpers of nutpie for the duration of one compile,
so the risk is bounded: ``pyproject.toml`` pins nutpie to the minor version they
mirror (a test fails if that pin and :data:`_NUTPIE_VERSIONS` disagree, or if the
cache is inactive with the pinned nutpie); a model the wrappers cannot key (shared
variables) compiles the usual way; and any other failure in the cached path, or a
nutpie it was not written for, falls back to ``nutpie.compile_pymc_model`` with one
:class:`CompileCacheWarning` (the draws are the same, the compile slower). Switch
this cache off with ``OPINIONMAP_COMPILE_CACHE=0`` or all of PyTensor's numba
caching with ``PYTENSOR_FLAGS=numba__cache=False``; clear it by deleting the
``numba`` folder of PyTensor's compile directory (``pytensor.config.base_compiledir``).
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numba
import numpy as np
from numba.core.dispatcher import Dispatcher

__all__ = ["CompileCacheWarning", "compile_pymc_model"]

# bump when the wrappers below change in a way their text does not show
_CACHE_VERSION = "2"
# the nutpie versions whose helpers and callback conventions the wrappers mirror
_NUTPIE_VERSIONS = ("0.16.",)

_LOGP_SOURCE = """
def logp_numba(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    try:
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_dim},))
        logp = numba.carray(logp_, ())
        logp_val, grad = inner(x)
        logp[()] = logp_val
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:
        return 1
    return 0
"""

_EXPAND_SOURCE = """
def expand_numba(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    try:
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_expanded},))
        (values,) = inner(x)
        out[...] = values
    except Exception:
        return -2
    return 0
"""

# nutpie's helpers are module attributes, swapped for the duration of one compile
_lock = threading.Lock()


class _NotCacheable(Exception):
    """The model cannot use the cached wrappers; compile it the usual way."""


class CompileCacheWarning(UserWarning):
    """The compile cache could not be used: the model compiles without it (slower)."""


def _versions() -> str:
    import nutpie
    import pytensor

    return (
        f"nutpie {nutpie.__version__}; numba {numba.__version__}; pytensor {pytensor.__version__}"
    )


def _cached_wrapper(source: str, name: str, inner: Any) -> Callable[..., int]:
    """The wrapper ``name`` defined by ``source``, registered for numba's disk cache."""
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

    py_func = getattr(inner, "py_func", None)
    inner_key = CACHED_SRC_FUNCTIONS.get(py_func) if py_func is not None else None
    if inner_key is None:  # PyTensor could not key (so cache) the function itself
        raise _NotCacheable(name)
    key = hashlib.sha256(
        "\n".join((_CACHE_VERSION, _versions(), inner_key, source)).encode()
    ).hexdigest()
    # ``__name__`` lets numba rebuild the wrapper's environment when it loads it
    env = {"__name__": __name__, "inner": _forwarded_to(inner), "np": np, "numba": numba}
    func: Callable[..., int] = compile_numba_function_src(
        source, name, global_env=env, cache_key=f"opinionmap_{key}"
    )
    return func


def _forwarded_to(fn: Any) -> Any:
    """The numba function of the graph itself, behind PyTensor's Python-callable ``fn``.

    PyTensor's compiled function (``vm.jit_fn``) is a second numba function that only
    forwards its arguments to the graph's (``jitable_func`` in its globals). Compiling
    it links and optimises the whole graph's code once more (main_enemy compiled in
    57.5 s with it, 40.2 s without, ``benchmarks/README.md``); the C callbacks call the
    graph's function directly instead, and ``fn`` is never compiled.
    """
    py_func = getattr(fn, "py_func", None)
    target = getattr(py_func, "__globals__", {}).get("jitable_func")
    return target if isinstance(target, Dispatcher) else fn


@contextmanager
def _cached_wrappers() -> Iterator[None]:
    """Make nutpie build its two C callbacks from :func:`_cached_wrapper`."""
    import nutpie.compile_pymc as ncp

    make_logp, make_expand = ncp._make_c_logp_func, ncp._make_c_expand_func
    # a compile in another thread (not through this module) gets nutpie's own wrappers
    owner = threading.get_ident()

    def logp_func(
        n_dim: int, logp_fn: Any, user_data: Any, shared_keys: Any, shared_data: Any
    ) -> tuple[Callable[..., int], Any]:
        if threading.get_ident() != owner:
            return make_logp(n_dim, logp_fn, user_data, shared_keys, shared_data)
        if shared_keys:
            raise _NotCacheable("shared variables")
        # nutpie's own maker gives the C signature its sampler calls (its wrapper unused)
        _, signature = make_logp(n_dim, logp_fn, user_data, shared_keys, shared_data)
        source = _LOGP_SOURCE.format(n_dim=int(n_dim))
        return _cached_wrapper(source, "logp_numba", logp_fn), signature

    def expand_func(
        n_dim: int,
        n_expanded: int,
        expand_fn: Any,
        user_data: Any,
        shared_keys: Any,
        shared_data: Any,
    ) -> tuple[Callable[..., int], Any]:
        if threading.get_ident() != owner:
            return make_expand(n_dim, n_expanded, expand_fn, user_data, shared_keys, shared_data)
        if shared_keys:
            raise _NotCacheable("shared variables")
        _, signature = make_expand(
            n_dim, n_expanded, expand_fn, user_data, shared_keys, shared_data
        )
        source = _EXPAND_SOURCE.format(n_dim=int(n_dim), n_expanded=int(n_expanded))
        return _cached_wrapper(source, "expand_numba", expand_fn), signature

    ncp._make_c_logp_func, ncp._make_c_expand_func = logp_func, expand_func
    try:
        yield
    finally:
        ncp._make_c_logp_func, ncp._make_c_expand_func = make_logp, make_expand


def _wanted() -> bool:
    """Whether the user left the cache on (``OPINIONMAP_COMPILE_CACHE``, PyTensor's numba cache)."""
    if os.environ.get("OPINIONMAP_COMPILE_CACHE", "1").strip().lower() in ("0", "false", "no"):
        return False
    import pytensor

    return bool(pytensor.config.numba__cache)


def _supported() -> bool:
    """Whether this nutpie and PyTensor have what the cached wrappers rely on."""
    try:
        import nutpie
        import nutpie.compile_pymc as ncp
        from pytensor.link.numba.cache import (  # noqa: F401
            CACHED_SRC_FUNCTIONS,
            compile_numba_function_src,
        )
    except ImportError:
        return False
    return (
        nutpie.__version__.startswith(_NUTPIE_VERSIONS)
        and hasattr(ncp, "_make_c_logp_func")
        and hasattr(ncp, "_make_c_expand_func")
    )


def _usable() -> bool:
    """Whether the cache is wanted and this nutpie and PyTensor have what it relies on."""
    return _wanted() and _supported()


def compile_pymc_model(model: Any) -> Any:
    """``nutpie.compile_pymc_model(model)`` (numba backend), its C callbacks cached on disk.

    Falls back to nutpie's own compile when the cache is switched off (silently), when
    the model cannot be keyed (silently), or on anything unexpected (with a
    :class:`CompileCacheWarning`).
    """
    import nutpie

    if not _wanted():
        return nutpie.compile_pymc_model(model)
    if not _supported():
        warnings.warn(
            f"opinionmap's compile cache supports nutpie {', '.join(_NUTPIE_VERSIONS)}x, not "
            f"{nutpie.__version__}; compiling without it (same draws, 4-10 s more per model). "
            "Install the nutpie version opinionmap pins.",
            CompileCacheWarning,
            stacklevel=2,
        )
        return nutpie.compile_pymc_model(model)
    with _lock:
        try:
            with _cached_wrappers():
                return nutpie.compile_pymc_model(model, cache=True)
        except _NotCacheable:
            pass
        except Exception as exc:  # anything else: nutpie's own compile, said once
            warnings.warn(
                f"opinionmap's compile cache failed ({type(exc).__name__}: {exc}); compiling "
                "with nutpie's own callbacks instead (same draws, slower). Set "
                "OPINIONMAP_COMPILE_CACHE=0 to skip the cache.",
                CompileCacheWarning,
                stacklevel=2,
            )
    return nutpie.compile_pymc_model(model)
