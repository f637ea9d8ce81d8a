"""A paged KV cache in the manner of vLLM's PagedAttention (Kwon et al., SOSP'23).

The cache is `capacity_pages` pages of `page_tokens` tokens. A request holding `t` tokens of KV owns
ceil(t / page_tokens) pages; pages are allocated as its context grows and all freed at once when it finishes or is
preempted. Only page counts are tracked: which physical page a request owns does not change any cost here, and
pages are never shared between requests (no prefix caching). The one invariant: pages in use never exceed
capacity; a request that would break it raises, so the scheduler must ask `fits` first.
"""

from __future__ import annotations

import math
from collections.abc import Collection

from archsim.errors import SpecError


def kv_capacity_pages(kv_capacity_bytes: float, kv_bytes_per_token: float, page_tokens: int) -> int:
    """Whole pages of `page_tokens` tokens that fit in `kv_capacity_bytes` at `kv_bytes_per_token`."""
    if not kv_bytes_per_token > 0:
        raise SpecError("<python>", "kv_bytes_per_token", f"expected a positive number, got {kv_bytes_per_token}")
    if not kv_capacity_bytes >= 0:
        raise SpecError("<python>", "kv_capacity_bytes", f"expected a number >= 0, got {kv_capacity_bytes}")
    return math.floor(kv_capacity_bytes / (kv_bytes_per_token * page_tokens))


class PagedKVCache:
    """Page accounting for the requests resident in the KV cache."""

    def __init__(self, capacity_pages: int, page_tokens: int) -> None:
        if capacity_pages < 0 or page_tokens < 1:
            raise SpecError("<python>", "kv_cache", f"expected capacity_pages >= 0 and page_tokens >= 1, "
                            f"got {capacity_pages} and {page_tokens}")
        self.capacity_pages = capacity_pages
        self.page_tokens = page_tokens
        self.used_pages = 0
        self._pages: dict[int, int] = {}

    def pages_for(self, tokens: int) -> int:
        """Pages that hold `tokens` tokens of one request."""
        return -(-tokens // self.page_tokens)

    @property
    def free_pages(self) -> int:
        return self.capacity_pages - self.used_pages

    def pages_of(self, request_id: int) -> int:
        return self._pages.get(request_id, 0)

    def extra_pages(self, request_id: int, tokens: int) -> int:
        """Pages to add so that request `request_id` holds `tokens` tokens (0 if it already does)."""
        return max(self.pages_for(tokens) - self.pages_of(request_id), 0)

    def fits(self, request_id: int, tokens: int, reserve_pages: int = 0) -> bool:
        """Whether request `request_id` can grow to `tokens` tokens and still leave `reserve_pages` free."""
        return self.extra_pages(request_id, tokens) + reserve_pages <= self.free_pages

    def grow(self, request_id: int, tokens: int) -> None:
        """Allocate pages so that request `request_id` (new or resident) holds `tokens` tokens."""
        extra = self.extra_pages(request_id, tokens)
        if extra > self.free_pages:
            raise RuntimeError(f"KV cache overflow: request {request_id} needs {extra} pages, "
                               f"{self.free_pages} of {self.capacity_pages} free")
        self._pages[request_id] = self.pages_of(request_id) + extra
        self.used_pages += extra

    def grow_one_page(self, request_ids: Collection[int]) -> bool:
        """One page more for each resident request of `request_ids` (each at a page boundary) if all fit together;
        else change nothing and return False. The same pages as `grow` one after another when none would
        overflow."""
        if len(request_ids) > self.capacity_pages - self.used_pages:
            return False
        pages = self._pages
        for request_id in request_ids:
            pages[request_id] += 1
        self.used_pages += len(request_ids)
        return True

    def free(self, request_id: int) -> int:
        """Release all pages of request `request_id`; returns how many."""
        pages = self._pages.pop(request_id, 0)
        self.used_pages -= pages
        return pages
