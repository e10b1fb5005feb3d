"""How release-1.duckdb.gz was made: the first release's own code writes the store.

    git archive 310488a | tar -x -C /tmp/rel1        # the first release (store migrations 001-002)
    python tests/data/stores/make_release_1.py /tmp/rel1 /tmp/rel1ws
    gzip -9 -c /tmp/rel1ws/.pipeline/store.duckdb > tests/data/stores/release-1.duckdb.gz

It runs that release's CLI against that release's scriptable test server for two pairs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

release, target = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(release))
from tests.conftest import make_workspace  # noqa: E402  (the old release's helpers)
from tests.fakeserver import FakeLLM  # noqa: E402

server = FakeLLM().start()
workspace = make_workspace(target, server.base_url)
env = {**os.environ, "PIPELINE_TEST_KEY": "sk-test", "PYTHONPATH": str(release)}
try:
    for pair in ("image-classification,image-segmentation", "django,flask"):
        subprocess.run([sys.executable, "-m", "pipeline", "--workspace", str(workspace), "run", "--pair", pair],
                       env=env, cwd=release, check=True)  # fmt: skip
finally:
    server.stop()
