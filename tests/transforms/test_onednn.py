"""igaudit turns oneDNN on before TensorFlow starts, unless the environment says otherwise."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = ("import igaudit.transforms.attribution.engine; from tensorflow.python.util import _pywrap_util_port as p; "
         "import os; print(os.environ['TF_ENABLE_ONEDNN_OPTS'], int(p.IsMklEnabled()))")


@pytest.mark.slow   # a fresh Python process per case
@pytest.mark.parametrize("preset,expected", [(None, "1 1"), ("0", "0 0")])
def test_importing_transforms_sets_onednn_unless_already_set(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if preset is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = preset
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == expected
