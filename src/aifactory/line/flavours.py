"""Models of any flavour: saving one to a single file, and loading it back as a predictor.

Flavours (like MLflow's):
- `sklearn`: any scikit-learn estimator (pickled; `predict_proba` for a classifier, else `predict`);
- `torch`: an `nn.Module` with its class: the weights, the constructor's keyword arguments and
  the source of the module that defines the class, so the file alone rebuilds it;
- `torchscript`: a scripted or traced module (`torch.jit.save`);
- `onnx`: an ONNX graph, run by onnxruntime (the `onnx` extra);
- `pyfunc`: the general case, a plain Python `predict(x) -> array` function, kept with the
  source of its module;
- `digits`: the demo's CNN checkpoints (`aifactory.line.digits_model`).

A predictor maps float32 rows (B, F), F = the signature's inputs, to float32 (B, K): class
probabilities in the signature's class order, or one value per regression target. Loading a
model runs its code (unpickling, the module source): register only models you trust, as you
would run their training code.
"""

from __future__ import annotations

import inspect
import io
import json
import pickle
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from aifactory.atomic import write_atomic
from aifactory.core.errors import SpecError, UnknownName
from aifactory.line.signature import Signature

FLAVOURS = ("sklearn", "torch", "torchscript", "onnx", "pyfunc", "digits")
SUFFIX = {"sklearn": ".pkl", "torch": ".pt", "torchscript": ".ts", "onnx": ".onnx", "pyfunc": ".json", "digits": ".pt"}
TORCH_FORMAT = "aifactory.torch/1"
PYFUNC_FORMAT = "aifactory.pyfunc/1"


class Predictor(Protocol):
    def predict(self, x: np.ndarray) -> np.ndarray:
        """x float32 (B, F) -> float32 (B, K)."""
        ...


def detect(model: Any) -> str:
    """The flavour of a live model object."""
    if isinstance(model, types.FunctionType):
        return "pyfunc"
    root = type(model).__module__.split(".")[0]
    if root == "onnx":
        return "onnx"
    if root == "torch" or "torch" in sys.modules:  # a user's nn.Module lives in the user's module
        import torch

        if isinstance(model, torch.jit.ScriptModule):
            return "torchscript"
        if isinstance(model, torch.nn.Module):
            return "torch"
    if root == "sklearn" or (hasattr(model, "fit") and hasattr(model, "get_params")):
        return "sklearn"
    raise SpecError(
        "flavour", f"cannot tell the flavour of a {type(model).__name__}: pass flavour= ({', '.join(FLAVOURS)})"
    )


def save(model: Any, folder: Path, flavour: str | None = None, init: dict[str, Any] | None = None) -> tuple[Path, str]:
    """Write `model` into `folder` as one file; returns (its path, its flavour).

    `init`: for the torch flavour, the keyword arguments its class is built with.
    """
    flavour = flavour or detect(model)
    if flavour not in FLAVOURS:
        raise UnknownName("flavour", flavour, FLAVOURS)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"model{SUFFIX[flavour]}"
    if flavour == "sklearn":
        data = pickle.dumps(model, protocol=5)
    elif flavour == "torch":
        data = _torch_bytes(model, init or {})
    elif flavour == "torchscript":
        import torch

        buf = io.BytesIO()
        torch.jit.save(model if isinstance(model, torch.jit.ScriptModule) else torch.jit.script(model), buf)
        data = buf.getvalue()
    elif flavour == "onnx":
        data = model.SerializeToString() if hasattr(model, "SerializeToString") else Path(model).read_bytes()
    elif flavour == "pyfunc":
        data = json.dumps({"format": PYFUNC_FORMAT, **_source_of(model)}, sort_keys=True).encode()
    else:
        raise SpecError("flavour", "digits checkpoints are written by aifactory.line.train")
    write_atomic(path, data, mode=0o600)
    return path, flavour


def _source_of(obj: Any) -> dict[str, str]:
    """The name of a class or function and the source of the module that defines it."""
    module = inspect.getmodule(obj)
    try:
        source = inspect.getsource(module) if module is not None else inspect.getsource(obj)
    except (OSError, TypeError):
        raise SpecError(
            "model", f"the source of {obj.__qualname__} cannot be found (define it in a .py file)"
        ) from None
    return {"name": obj.__qualname__, "source": source}


def _torch_bytes(model: Any, init: dict[str, Any]) -> bytes:
    import torch

    blob = {
        "format": TORCH_FORMAT,
        **_source_of(type(model)),
        "init": json.dumps(init, sort_keys=True),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    buf = io.BytesIO()
    torch.save(blob, buf)
    return buf.getvalue()


def _module_from(source: str, name: str) -> types.ModuleType:
    """A fresh module holding `source` (a model's own code, kept with it)."""
    module = types.ModuleType(f"aifactory_model_{abs(hash(source)) & 0xFFFFFFFF:08x}")
    module.__dict__["__name__"] = module.__name__  # so an `if __name__ == "__main__":` block does not run
    sys.modules[module.__name__] = module  # dataclasses and pickle look a class's module up here
    exec(compile(source, f"<model code of {name}>", "exec"), module.__dict__)
    return module


def _lookup(module: types.ModuleType, qualname: str) -> Any:
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise SpecError("model", f"{qualname} is not defined by the model's source")
    return obj


# -- loading ---------------------------------------------------------------------------------


def load(flavour: str, path: Path, signature: Signature | None) -> Predictor:
    """The predictor of a model file; SpecError("model") if it cannot be loaded as that flavour."""
    path = Path(path)
    if flavour not in FLAVOURS:
        raise UnknownName("flavour", flavour, FLAVOURS)
    if not path.is_file():
        raise SpecError("model", f"no such file: {path}")
    if flavour == "digits":
        from aifactory.line.digits_model import load_checkpoint

        return _Digits(load_checkpoint(path))
    if signature is None:
        raise SpecError("signature", f"a {flavour} model needs a signature")
    try:
        loaders: dict[str, Callable[[Path, Signature], Predictor]] = {
            "sklearn": _Sklearn,
            "torch": _Torch,
            "torchscript": _TorchScript,
            "onnx": _Onnx,
            "pyfunc": _PyFunc,
        }
        return loaders[flavour](path, signature)
    except SpecError:
        raise
    except Exception as exc:  # unpickling, exec and the runtimes raise anything on a bad file
        raise SpecError("model", f"{path.name} cannot be loaded as {flavour}: {type(exc).__name__}: {exc}") from None


def _finish(out: Any, signature: Signature, x: np.ndarray) -> np.ndarray:
    """(B, K) float32, probabilities for classification."""
    arr = np.asarray(out, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr.reshape(len(x), -1)
    if signature.task == "classification" and signature.logits:
        arr = arr - arr.max(axis=1, keepdims=True)
        np.exp(arr, out=arr)
        arr /= arr.sum(axis=1, keepdims=True)
    if arr.shape != (len(x), signature.outputs):
        raise SpecError(
            "model", f"the model answered shape {arr.shape}, its signature says ({len(x)}, {signature.outputs})"
        )
    return arr


class _Digits:
    def __init__(self, loaded: Any) -> None:
        self.loaded = loaded

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.loaded.predict_proba(x), dtype=np.float32)


class _Sklearn:
    def __init__(self, path: Path, signature: Signature) -> None:
        self.model = pickle.loads(path.read_bytes())
        self.signature = signature
        self.order: np.ndarray | None = None
        if signature.task == "classification":
            if not hasattr(self.model, "predict_proba"):
                raise SpecError("model", f"{type(self.model).__name__} has no predict_proba for classification")
            have = [int(c) for c in self.model.classes_]
            want = signature.classes or have
            if set(have) - set(want):
                raise SpecError("model", f"the model's classes {have} are not the signature's {want}")
            self.order = np.array([have.index(c) if c in have else -1 for c in want])

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.order is None:
            return _finish(self.model.predict(x), self.signature, x)
        probs = np.asarray(self.model.predict_proba(x), dtype=np.float32)
        out = np.zeros((len(x), len(self.order)), dtype=np.float32)
        known = self.order >= 0
        out[:, known] = probs[:, self.order[known]]
        return _finish(out, self.signature, x)


class _TorchBase:
    signature: Signature
    module: Any

    def predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return _finish(out.numpy(), self.signature, x)


class _Torch(_TorchBase):
    def __init__(self, path: Path, signature: Signature) -> None:
        import torch

        blob = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != TORCH_FORMAT:
            raise SpecError("model", f"{path.name} is not a {TORCH_FORMAT} file")
        cls = _lookup(_module_from(blob["source"], blob["name"]), blob["name"])
        self.module = cls(**json.loads(blob["init"]))
        self.module.load_state_dict(blob["state_dict"])
        self.module.eval()
        self.signature = signature


class _TorchScript(_TorchBase):
    def __init__(self, path: Path, signature: Signature) -> None:
        import torch

        self.module = torch.jit.load(io.BytesIO(path.read_bytes()), map_location="cpu").eval()
        self.signature = signature


class _Onnx:
    def __init__(self, path: Path, signature: Signature) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise SpecError(
                "flavour", "serving an onnx model needs onnxruntime: pip install 'aifactory[onnx]'"
            ) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path.read_bytes(), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.signature = signature

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})
        return _finish(out[0], self.signature, x)


class _PyFunc:
    def __init__(self, path: Path, signature: Signature) -> None:
        blob = json.loads(path.read_text())
        if not isinstance(blob, dict) or blob.get("format") != PYFUNC_FORMAT:
            raise SpecError("model", f"{path.name} is not a {PYFUNC_FORMAT} file")
        self.fn: Callable[[np.ndarray], Any] = _lookup(_module_from(blob["source"], blob["name"]), blob["name"])
        self.signature = signature

    def predict(self, x: np.ndarray) -> np.ndarray:
        return _finish(self.fn(x), self.signature, x)
