"""A simulated Telnyx API (recordings, transcriptions, custom storage) for the demo, tests, benches.

Spec-faithful shapes and status codes, deterministic data from a seed, presigned-style audio links
that expire, real deletion, and switchable rate limits and faults. See pipeline/sandbox/README.md.
"""

from pipeline.sandbox.app import create_app
from pipeline.sandbox.audio import audio_digest, iter_audio
from pipeline.sandbox.config import SandboxConfig, load_credentials
from pipeline.sandbox.server import SandboxServer, ThreadedSandbox, serve
from pipeline.sandbox.state import SandboxState

__all__ = [
    "SandboxConfig",
    "SandboxServer",
    "ThreadedSandbox",
    "SandboxState",
    "audio_digest",
    "create_app",
    "iter_audio",
    "load_credentials",
    "serve",
]
