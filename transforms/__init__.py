"""igaudit's Beam stages, one module per stage, in graph order: read, decode, dataset_context, attribute,
write, cluster, aggregate, skew, intervene, verdicts (`records` holds the element types and Parquet
schemas, `progress` the workers' progress lines). The Beam-free engines live in the subpackages: `attribution` (TensorFlow), `analysis`
(numpy) and `imaging` (Pillow).

Importing the package turns TensorFlow's oneDNN CPU kernels on for this process unless
TF_ENABLE_ONEDNN_OPTS is already set (TensorFlow reads it once, at its own import): on this project's
2-core AMD CPU they made MobileNetV2's forward + gradient 1.45x faster and cost the small demo CNN nothing
(benchmarks/RESULTS.md, "oneDNN"). Set TF_ENABLE_ONEDNN_OPTS=0 to opt out. Beam workers import this
package before TensorFlow when they load the model handler, so the setting reaches them on every runner.
A local worker process imports TensorFlow quietly here (`quiet_import`), as the launcher does, and every
process makes Beam's S3 and GCS filesystems reuse their clients (`object_stores`).
"""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from igaudit.transforms.object_stores import reuse_clients  # noqa: E402
from igaudit.transforms.quiet_import import (import_tensorflow_quietly, in_local_worker_process,  # noqa: E402
                                             quiet_keyboard_interrupt)

reuse_clients()

if in_local_worker_process():
    import_tensorflow_quietly()
    quiet_keyboard_interrupt()
