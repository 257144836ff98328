"""Load a classifier named by a `ModelConfig` as a differentiable callable.

Supported forms, all reachable through `load_classifier`:
- a Keras 3 file (`.keras`, legacy `.h5`), read with `keras.models.load_model`;
- a SavedModel directory (`saved_model.pb`), read with `tf.saved_model.load` and
  called through a named signature or, failing that, the object's `__call__`;
- a TF-Hub handle (an http(s) URL such as https://tfhub.dev/... or a Kaggle
  models URL) or a local hub directory, read with `tensorflow_hub.load`.

`hub.KerasLayer` is deliberately not used: it only works inside tf_keras
models and Keras 3 rejects it, while `hub.load` objects are plain trackables
that GradientTape differentiates through.

The `Classifier` takes pixels in [0, 1] and scales them to the model's input
range itself, so input gradients (and so IG) are always w.r.t. [0, 1] pixels.
"""
from __future__ import annotations

import os
import zipfile
from typing import TYPE_CHECKING, Any, Callable, Optional

import tensorflow as tf

from igaudit.transforms.attribution.model_files import (
    WHAT_TO_POINT_AT, ModelError, detect_format, exists, is_remote, is_url, local_copy, local_path,
    missing)

if TYPE_CHECKING:
    from igaudit.pipeline.config import ModelConfig

# Output keys tried, in order, when a signature returns several tensors.
_OUTPUT_KEYS = {
    "logits": ("logits", "output_0", "predictions", "outputs", "default", "probabilities"),
    "probabilities": ("probabilities", "probs", "predictions", "output_0", "outputs",
                      "default", "logits"),
}


def enable_gpu_memory_growth() -> None:
    """Let TensorFlow take GPU memory as it needs it instead of all of it up front, so several
    SDK processes (Dataflow runs one per vCPU) can share a GPU. Only possible before TF has
    initialised the GPUs; if this process already did (the launcher loaded the model), skip."""
    try:
        gpus = tf.config.list_physical_devices("GPU")
    except Exception:  # noqa: BLE001 - no usable GPU runtime: nothing to configure
        return
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):  # already initialised in this process
            pass


class Classifier:
    """A loaded model as a function of [0, 1] pixels: (N, H, W, C) -> (N, K) float32.

    `fn` is the raw model entry point taking inputs already in the model's
    input range; the loaded object is kept alive here because a SavedModel's
    variables are freed with it. `declared`: the input shape the model states
    (Keras inputs, a signature's or `__call__`'s input spec), None when unknown;
    `input_shape` (H, W, C) comes from it and `model.input_size` (`input_shape_of`).
    """

    def __init__(self, spec: ModelConfig, fn: Callable[[tf.Tensor], Any], kind: str,
                 entry: str, model: Any = None, input_dtype: tf.DType = tf.float32,
                 declared: Optional[tf.TensorShape] = None):
        self._spec = spec
        self._fn = fn
        self._kind = kind
        self._entry = entry
        self._model = model
        self._input_dtype = input_dtype
        self.input_shape = input_shape_of(spec, declared)
        self._num_classes = self._probe()

    @property
    def spec(self) -> ModelConfig:
        return self._spec

    @property
    def kind(self) -> str:
        """Which loader was used: "keras", "saved_model" or "hub"."""
        return self._kind

    @property
    def entry(self) -> str:
        """How the model is called: "keras model", "__call__" or
        "signature 'serving_default' (keras_tensor -> output_0)"."""
        return self._entry

    @property
    def model(self) -> Any:
        """The loaded object (a Keras model, or a SavedModel / hub trackable)."""
        return self._model

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def __call__(self, pixels) -> tf.Tensor:
        pixels = tf.convert_to_tensor(pixels, tf.float32)
        lo, hi = (float(v) for v in self._spec.input_range)
        # Scaling here, not in the caller, keeps gradients w.r.t. [0, 1] pixels.
        x = lo + pixels * (hi - lo)
        if self._input_dtype != tf.float32:
            x = tf.cast(x, self._input_dtype)
        return tf.cast(self._fn(x), tf.float32)

    def _probe(self) -> int:
        """One forward pass on zeros: checks the input shape and the output rank."""
        h, w, c = self.input_shape
        try:
            out = self(tf.zeros((1, h, w, c), tf.float32))
        except ModelError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure here means "wrong input"
            raise ModelError(
                f"model {self._spec.path!r} does not accept images of {h} x {w} x {c}: {_one_line(e)}; set "
                f"model.input_size to the [height, width] the model was trained on") from e
        if out.shape.rank != 2 or out.shape[0] != 1:
            raise ModelError(
                f"model {self._spec.path!r} returns shape {tuple(out.shape)} for one image; "
                f"igaudit needs a classifier returning (batch, classes) scores")
        return int(out.shape[1])

    def __repr__(self) -> str:
        return (f"Classifier(path={self._spec.path!r}, kind={self._kind!r}, "
                f"entry={self._entry!r}, num_classes={self._num_classes})")


# The classifiers this process loaded, newest last: in a local run the launcher's check and the worker (the
# same process) load the model once. Two are kept (a process running several jobs loads again).
_LOADED: dict = {}
_KEEP = 2


def _version_of(path: str):
    """What changes when the model file or folder is replaced (local paths; None for buckets and URLs)."""
    if is_remote(path) or is_url(path):
        return None
    try:
        stat = os.stat(local_path(path))
        return stat.st_mtime_ns, stat.st_size
    except OSError:
        return None


def load_classifier(spec: ModelConfig) -> Classifier:
    """The model `spec` names as a `Classifier`: loaded once per process (the same config and model file
    give the same object), so a local run's check and its worker share one load.

    Raises ModelError for a missing or unreadable model, one whose input does
    not fit spec.input_size, or one whose output is not (batch, classes).
    """
    key = (spec, _version_of(spec.path))
    if key in _LOADED:
        _LOADED[key] = _LOADED.pop(key)            # most recently used last
        return _LOADED[key]
    classifier = _load(spec)
    _LOADED[key] = classifier
    while len(_LOADED) > _KEEP:
        _LOADED.pop(next(iter(_LOADED)))
    return classifier


def _load(spec: ModelConfig) -> Classifier:
    loaders = {"keras": _load_keras, "saved_model": _load_saved_model, "hub": _load_hub}
    fmt = spec.format
    try:
        if fmt == "auto":
            fmt = detect_format(spec.path)
        return loaders[fmt](spec)
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - loaders raise many types; the user needs one
        if is_url(spec.path):
            fix = ("check network access to the handle, or download the model and point "
                   "model.path at the local directory")
        else:
            fix = f"point model.path at {WHAT_TO_POINT_AT} (or set model.format)"
        raise ModelError(
            f"could not load model.path {spec.path!r} as {fmt}: {_one_line(e)}; {fix}") from e


# --- loaders -----------------------------------------------------------------

def _load_keras(spec: ModelConfig) -> Classifier:
    import keras

    if keras.backend.backend() != "tensorflow":
        # Input gradients are taken with tf.GradientTape, which needs TF tensors.
        raise ModelError(
            f"model.path {spec.path!r}: Keras backend is {keras.backend.backend()!r}; "
            f"igaudit needs KERAS_BACKEND=tensorflow")
    if not exists(spec.path):
        raise missing(spec.path)
    local = local_copy(spec.path) if is_remote(spec.path) else local_path(spec.path)
    if os.path.isdir(local):
        raise ModelError(
            f"model.path {spec.path!r} is a directory, not a .keras file: "
            f"use model.format: saved_model for SavedModel directories")
    # Keras reports a non-zip .keras file as "File not found", which misleads.
    if local.lower().endswith(".keras") and not zipfile.is_zipfile(local):
        raise ModelError(
            f"model.path {spec.path!r} is not a valid .keras file (not a zip archive): "
            f"re-save the model with model.save('name.keras') or point model.path at "
            f"{WHAT_TO_POINT_AT}")
    model = keras.models.load_model(local, compile=False)
    if spec.precision != "float32":
        model = _mixed_precision_copy(model, spec.precision)

    def call(x):
        return _pick_output(model(x, training=False), spec, "model")

    return Classifier(spec, call, "keras", "keras model", model=model, declared=_keras_input_shape(model))


def _mixed_precision_copy(model, policy: str):
    """The same network and weights computing in float16 or bfloat16 with float32 variables (Keras'
    `mixed_float16` / `mixed_bfloat16` policy, `model.precision`).

    A loaded model keeps the dtype policy it was saved with, so the global policy alone does nothing:
    each layer is rebuilt from its config with the policy swapped (nested models too). The Classifier
    casts the outputs to float32, and the input gradients are taken w.r.t. float32 pixels, so the IG
    engine sums gradients in float32. float16 pays on GPUs with tensor cores, bfloat16 on CPUs with
    AVX-512 BF16 / AMX; elsewhere both are slower than float32 (benchmarks/RESULTS.md, "Precision").
    """
    import keras

    def clone(layer):
        if isinstance(layer, keras.Model):           # a nested model (e.g. a base network): clone inside
            return keras.models.clone_model(layer, clone_function=clone)
        config = layer.get_config()
        if not isinstance(layer, keras.layers.InputLayer):
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    try:
        copy = keras.models.clone_model(model, clone_function=clone)
        copy.set_weights(model.get_weights())
    except Exception as e:  # subclassed models cannot be cloned from config
        raise ModelError(f"model.precision {policy}: cannot rebuild this model with {policy} compute "
                         f"({_one_line(e)}); set model.precision: float32") from None
    return copy


def _keras_input_shape(model) -> Optional[tf.TensorShape]:
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        return None  # subclassed or multi-input: leave it to the forward probe
    return tf.TensorShape(inputs[0].shape)


def _load_saved_model(spec: ModelConfig) -> Classifier:
    path = _local_dir(spec)
    obj = tf.saved_model.load(path)
    return _wrap_trackable(spec, obj, "saved_model", prefer_signature=True)


def _load_hub(spec: ModelConfig) -> Classifier:
    import tensorflow_hub as hub

    # URLs are resolved and cached by tensorflow_hub itself (TFHUB_CACHE_DIR).
    path = spec.path if is_url(spec.path) else _local_dir(spec)
    obj = hub.load(path)
    return _wrap_trackable(spec, obj, "hub", prefer_signature=False)


def _local_dir(spec: ModelConfig) -> str:
    if not exists(spec.path):
        raise missing(spec.path)
    return local_copy(spec.path) if is_remote(spec.path) else local_path(spec.path)


def _wrap_trackable(spec: ModelConfig, obj, kind: str, prefer_signature: bool) -> Classifier:
    """Pick the entry point of a loaded SavedModel / hub object.

    SavedModel: the named signature first (that is what serving exports
    promise), then `__call__` (TF2 hub-style SavedModels). Hub: `__call__`
    first (the TF2 hub convention), then the named signature, then TF1 hub's
    "default" signature.
    """
    signatures = dict(getattr(obj, "signatures", {}) or {})
    has_call = callable(obj)

    def by_signature(name: str) -> Classifier:
        return _wrap_signature(spec, obj, signatures[name], name, kind)

    def by_call() -> Classifier:

        def call(x):
            return _pick_output(obj(x), spec, "__call__")

        return Classifier(spec, call, kind, "__call__", model=obj, declared=_restored_input_shape(obj.__call__))

    if prefer_signature and spec.signature in signatures:
        return by_signature(spec.signature)
    if has_call:
        return by_call()
    for name in (spec.signature, "default"):
        if name in signatures:
            return by_signature(name)
    available = ", ".join(sorted(signatures)) or "none"
    raise ModelError(
        f"model.path {spec.path!r} has no signature {spec.signature!r} and is not callable "
        f"(signatures: {available}); set model.signature to one of them")


def _wrap_signature(spec: ModelConfig, obj, sig, name: str, kind: str) -> Classifier:
    """Call a signature (keyword-only) with its single input; pick one output."""
    args, kwargs = sig.structured_input_signature
    if args or len(kwargs) != 1:
        names = ", ".join(sorted(kwargs)) or "positional"
        raise ModelError(
            f"model.path {spec.path!r}: signature {name!r} takes inputs ({names}); "
            f"igaudit needs a signature with exactly one image input")
    (input_name, input_spec), = kwargs.items()
    if not input_spec.dtype.is_floating:
        raise ModelError(
            f"model.path {spec.path!r}: signature {name!r} takes {input_spec.dtype.name} input; "
            f"integrated gradients need a float input (export a float32 signature)")
    output_key = _signature_output_key(spec, sig, name)

    def call(x):
        out = sig(**{input_name: x})
        return out[output_key] if output_key is not None else out

    entry = f"signature {name!r} ({input_name} -> {output_key or 'tensor'})"
    return Classifier(spec, call, kind, entry, model=obj, input_dtype=input_spec.dtype, declared=input_spec.shape)


def _signature_output_key(spec: ModelConfig, sig, name: str) -> Optional[str]:
    """Which output of a signature to use.

    One output: that one. Several: the first of the names listed in
    _OUTPUT_KEYS for spec.output (so 'logits' or 'probabilities' wins when the
    model exports both), else an error listing the keys.
    """
    outputs = sig.structured_outputs
    if not isinstance(outputs, dict):
        return None
    if len(outputs) == 1:
        return next(iter(outputs))
    for key in _OUTPUT_KEYS[spec.output]:
        if key in outputs:
            return key
    raise ModelError(
        f"model.path {spec.path!r}: signature {name!r} returns several outputs "
        f"({', '.join(sorted(outputs))}) and none is named logits/probabilities/output_0; "
        f"export a signature with one output")


def _pick_output(out, spec: ModelConfig, where: str):
    """Unwrap a single-entry dict/list output; pick by name from a multi-entry dict."""
    if isinstance(out, dict):
        if len(out) == 1:
            return next(iter(out.values()))
        for key in _OUTPUT_KEYS[spec.output]:
            if key in out:
                return out[key]
        raise ModelError(
            f"model.path {spec.path!r}: {where} returns several outputs "
            f"({', '.join(sorted(out))}); igaudit needs one (batch, classes) output")
    if isinstance(out, (list, tuple)):
        if len(out) == 1:
            return out[0]
        raise ModelError(
            f"model.path {spec.path!r}: {where} returns {len(out)} outputs; "
            f"igaudit needs one (batch, classes) output")
    return out


def _restored_input_shape(fn) -> Optional[tf.TensorShape]:
    signature = getattr(fn, "input_signature", None)
    if not signature or len(signature) != 1 or not isinstance(signature[0], tf.TensorSpec):
        return None
    return signature[0].shape


CHANNELS = (1, 3, 4)    # grayscale, RGB, RGBA: what decoding can give


def input_shape_of(spec: ModelConfig, declared: Optional[tf.TensorShape]) -> tuple[int, int, int]:
    """(H, W, C) the model takes: H and W from the model's declared input shape, else from
    `model.input_size`; C from the model (1, 3 or 4), else 3.

    Done up front because neither Keras models with global pooling nor signature functions
    reject a wrong spatial size on their own: they would silently run on images of a size the
    model was never trained on. Every message says what to change.
    """
    dims = [None] * 4
    if declared is not None and declared.rank is not None:
        if declared.rank != 4:
            raise ModelError(f"model {spec.path!r} takes inputs of shape {tuple(declared.as_list())}; igaudit "
                             f"needs a model of images: (batch, height, width, channels)")
        dims = declared.as_list()
    _, h, w, c = (None if d is None else int(d) for d in dims)
    if c is not None and c not in CHANNELS:
        raise ModelError(f"model {spec.path!r} takes images with {c} channels; igaudit reads images as 1 "
                         f"(grayscale), 3 (RGB) or 4 (RGBA) channels")
    given = spec.input_size
    if given is not None and None not in (h, w) and tuple(given) != (h, w):
        raise ModelError(f"model {spec.path!r} takes {h} x {w} images but model.input_size is "
                         f"[{given[0]}, {given[1]}]: remove model.input_size (the model's own size is used) or "
                         f"set it to [{h}, {w}]")
    if given is None and None in (h, w):
        raise ModelError(f"model {spec.path!r} does not state its image size: set model.input_size to the "
                         f"[height, width] it was trained on, e.g. [224, 224]")
    size = tuple(given) if given is not None else (h, w)
    return (int(size[0]), int(size[1]), c if c is not None else 3)


def _one_line(e: BaseException, limit: int = 200) -> str:
    text = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
