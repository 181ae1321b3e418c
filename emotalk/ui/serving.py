"""How the app serves: queue and concurrency limits, upload size, where request files go (environment
overrides), read once at start so every handler sees the same limits."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServeSettings:
    """Serving limits of one app process."""

    queue_size: int = 16  # requests waiting at most; later ones are told the queue is full
    gpu_concurrency: int = 1  # renders and fine-tunes running at once
    preview_concurrency: int = 2  # preview stills rendered at once
    max_upload: str = "100mb"  # largest upload Gradio accepts
    output_max_age_s: float = 3600.0  # request folders older than this are deleted
    out_root: Path = Path(tempfile.gettempdir()) / "emotalk-app"  # each request gets a folder in here
    test_recipes: bool = False  # offer the tiny "test" fine-tune recipe (set by the browser test only)
    warm_up: bool = True  # load the first identity in the background at launch (a quick first preview)

    @classmethod
    def from_env(cls) -> ServeSettings:
        """The defaults, overridden by EMOTALK_* environment variables."""
        env, d = os.environ.get, cls()
        return cls(queue_size=int(env("EMOTALK_QUEUE_SIZE", d.queue_size)),
                   gpu_concurrency=int(env("EMOTALK_GPU_CONCURRENCY", d.gpu_concurrency)),
                   preview_concurrency=int(env("EMOTALK_PREVIEW_CONCURRENCY", d.preview_concurrency)),
                   max_upload=env("EMOTALK_MAX_UPLOAD", d.max_upload),
                   output_max_age_s=float(env("EMOTALK_OUTPUT_MAX_AGE_S", d.output_max_age_s)),
                   out_root=Path(env("EMOTALK_APP_OUT", str(d.out_root))),
                   test_recipes=env("EMOTALK_TEST_RECIPES", "") == "1",
                   warm_up=env("EMOTALK_WARM_UP", "1") != "0")


SETTINGS = ServeSettings.from_env()


def listen_address() -> tuple[str, int]:
    """Host and port: EMOTALK_HOST/PORT, else Gradio's own variables (set on a Space), else localhost."""
    env = os.environ.get
    host = env("EMOTALK_HOST") or env("GRADIO_SERVER_NAME") or "127.0.0.1"
    return host, int(env("EMOTALK_PORT") or env("GRADIO_SERVER_PORT") or 7860)
