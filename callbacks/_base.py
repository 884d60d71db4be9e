"""Old private home of the handler helpers; they now live in :mod:`.base`.

Kept only because ``examples/*.ipynb`` import ``token_text`` from here. Import
from ``lc_async_pipelines.callbacks`` instead; this module goes once they do.
"""

from lc_async_pipelines.callbacks.base import Token, item_of, token_text, usage_of

__all__ = ["Token", "item_of", "token_text", "usage_of"]
