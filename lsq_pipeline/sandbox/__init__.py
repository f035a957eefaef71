"""A local HTTP server that behaves like LeadSquared's opportunity API. Knows nothing of the client."""

from lsq_pipeline.sandbox.account import Account, AccountError, load_account
from lsq_pipeline.sandbox.backend import SandboxBackend
from lsq_pipeline.sandbox.embedded import ensure_sandbox, stop_sandbox
from lsq_pipeline.sandbox.profiles import PROFILES, Profile
from lsq_pipeline.sandbox.server import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_SECRET_KEY,
    RunningSandbox,
    SandboxOptions,
    run_sandbox,
)

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_SECRET_KEY",
    "Account",
    "AccountError",
    "PROFILES",
    "Profile",
    "RunningSandbox",
    "SandboxBackend",
    "SandboxOptions",
    "ensure_sandbox",
    "load_account",
    "run_sandbox",
    "stop_sandbox",
]
