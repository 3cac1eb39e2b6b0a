"""Policy options on the live floor: LiveSettings carries them into the core; `up` refuses bad ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from aifactory.live.settings import LiveSettings

AIFACTORY = [sys.executable, "-c", "from aifactory.cli import main; main()"]


def test_policy_options_reach_the_live_core_and_bad_ones_stop_up(tmp_path: Path) -> None:
    settings = LiveSettings(home=tmp_path, gpus=1, policy_opts=("half_life_s=60", "min_runtime_s=5"))
    assert (settings.core().half_life_s, settings.core().min_runtime_s) == (60.0, 5.0)
    env = {**os.environ, "AIFACTORY_HOME": str(tmp_path / "home")}
    for opt, words in [("bogus=1", "unknown option of policy fairshare"), ("half_life_s=-1", "policy_opt.half_life_s")]:
        up = subprocess.run(
            [*AIFACTORY, "up", "--gpus", "1", "--port", "0", "--policy-opt", opt],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert up.returncode == 2 and words in up.stderr and "Traceback" not in up.stderr, up.stderr
