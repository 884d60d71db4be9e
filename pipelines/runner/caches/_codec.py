"""How both LLM caches (SQLite and Redis) key and store generations: one format for both."""

from __future__ import annotations

import re
import warnings

from langchain_core.load import Serializable, loads
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation

from lc_async_pipelines._scrub import scrub

# The embedded llama-server listens on a new loopback port each run; the port
# must not change the key, or nothing would ever hit across runs.
_LOOPBACK_PORT = re.compile(r"(https?://(?:127\.0\.0\.1|localhost|\[::1\])):\d+")
_ALLOWED: list[type[Serializable]] = [ChatGeneration, Generation, AIMessage]


def normalize_llm_string(llm_string: str) -> str:
    """Return the cache key's model-settings part: no loopback port, no credential."""
    # Scrubbed too: the settings may hold a password inside the endpoint's URL.
    return scrub(_LOOPBACK_PORT.sub(r"\1", llm_string))


def load_generation(text: str) -> Generation:
    """Read one generation stored by ``langchain_core.load.dumps``, allowing only output types."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # loads() is marked beta
        value = loads(text, allowed_objects=_ALLOWED)
    if not isinstance(value, Generation):
        msg = f"cached value is a {type(value).__name__}, not a Generation"
        raise TypeError(msg)
    return value
