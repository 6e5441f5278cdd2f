"""This user's private deploy-robust folder: $DEPLOY_ROBUST_HOME, else $XDG_CACHE_HOME/deploy-robust,
else ~/.cache/deploy-robust. It holds what must not come from a downloaded bundle: the resume
HMAC key, compiled-model caches."""

from __future__ import annotations

import os
from pathlib import Path


def user_home() -> Path:
    home = os.environ.get("DEPLOY_ROBUST_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "deploy-robust"
    )
    return Path(home)
