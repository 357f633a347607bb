"""The project with its static files collected in STATIC_ROOT (from the environment) and served by WhiteNoise."""

from __future__ import annotations

import os

from djproject.settings import *  # noqa: F403
from djproject.settings import MIDDLEWARE

# Right after SecurityMiddleware, as WhiteNoise asks; it serves what collectstatic put in STATIC_ROOT.
MIDDLEWARE = [MIDDLEWARE[0], "whitenoise.middleware.WhiteNoiseMiddleware", *MIDDLEWARE[1:]]
STATIC_ROOT = os.environ["STATIC_ROOT"]
