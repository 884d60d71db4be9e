"""The provider seam: a BatchProvider of the test's own, in memory, under a BatchSession.

No network: the provider answers each request with its text reversed, and
counts what it was asked, so the session's common part (stages, state file,
resume) is seen working for a provider that keeps no input (as Anthropic's).
"""

import json
from typing import Any

from langchain_core.exceptions import ModelAPIError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from lc_async_pipelines.runner import RateBudget, RetryPolicy, with_budget
from lc_async_pipelines.runner.batch import (
    BatchOptions,
    BatchProvider,
    BatchRequest,
    BatchSession,
    BatchStatus,
    LineResult,
    batches_path,
)
from lc_async_pipelines.runner.batch._files import canonical_json, custom_id

FAST = RetryPolicy(max_retries=3, initial=0.01, max_wait=0.02, jitter=0.0)
OPTIONS = {"settle_s": 0.05, "poll_initial_s": 0.001, "poll_max_s": 0.01}
ENDPOINT = "/v1/fake"


class Routed(BaseChatModel):
    """A chat model whose calls go to the session's route: the last message's text in, a reply out."""

    route: Any = Field(exclude=True)

    @property
    def _llm_type(self) -> str:
        return "routed-fake"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        raise NotImplementedError

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        result = await self.route(ENDPOINT, {"model": "m", "text": messages[-1].content})
        assert result is not None
        if not result.ok:
            raise ModelAPIError(result.body["error"]["message"])  # retried by the budget
        return ChatResult(generations=[ChatGeneration(message=AIMessage(result.body["text"]))])


class Memory(BatchProvider):
    name = "memory"
    keeps_input = False

    def __init__(self, found: BatchStatus | None = None) -> None:
        self.batches: dict[str, list[BatchRequest]] = {}
        self.found = found
        self.finds = 0

    def batched_model(self, route, on_direct):
        return Routed(route=route)

    async def open(self) -> None:
        return None

    def request(self, custom_id: str, endpoint: str, body: dict[str, Any]) -> BatchRequest:
        line = (canonical_json({"custom_id": custom_id, "params": body}) + "\n").encode()
        return BatchRequest(custom_id, endpoint, body, line, 1)

    async def create(self, entry, part, metadata) -> BatchStatus:
        assert part is not None
        batch_id = f"b{len(self.batches) + 1}"
        self.batches[batch_id] = part
        return BatchStatus(batch_id, "ended", True, {"size": len(part)})

    async def find(self, entry, taken):
        self.finds += 1
        return self.found

    async def retrieve(self, batch_id: str) -> BatchStatus:
        return BatchStatus(batch_id, "ended", True)

    async def results(self, entry) -> dict[str, LineResult]:
        part = self.batches[entry["id"]]
        return {r.custom_id: LineResult(200, {"text": r.body["text"][::-1]}) for r in part}

    async def cancel(self, batch_id: str) -> BatchStatus:
        return BatchStatus(batch_id, "ended", True)


async def test_a_provider_of_ones_own_batches_a_stage_and_records_it(tmp_path):
    state = batches_path(tmp_path / "out.jsonl")
    provider = Memory()
    async with BatchSession(Routed(route=None), BatchOptions(state_path=state, **OPTIONS),
                            provider=provider) as session:  # fmt: skip
        llm = with_budget(session.chat_model, RateBudget(), retry=FAST)
        replies = [await llm.ainvoke(t) for t in ("abc",)]
        assert replies[0].content == "cba"
    assert session.stats.batches_created == 1 and len(provider.batches) == 1
    entry = json.loads(state.read_text())["batches"][0]
    assert entry["provider"] == "memory" and entry["status"] == "ended" and entry["size"] == 1
    assert "input_file_id" not in entry  # no upload step: nothing recorded for one


async def test_a_batch_recorded_but_never_created_is_looked_for_then_sent_again(tmp_path):
    state = batches_path(tmp_path / "out.jsonl")
    cid = custom_id(ENDPOINT, {"model": "m", "text": "abc"})
    # a session killed between recording the batch and creating it
    killed = {"id": None, "provider": "memory", "status": "recorded", "endpoint": ENDPOINT,
              "model": "m", "requests": 1, "tokens": 1, "created_at": 0, "custom_ids": [cid]}  # fmt: skip
    state.write_text(json.dumps({"format": 1, "batches": [killed]}))
    provider = Memory(found=None)
    async with BatchSession(Routed(route=None), BatchOptions(state_path=state, **OPTIONS),
                            provider=provider) as session:  # fmt: skip
        llm = with_budget(session.chat_model, RateBudget(), retry=FAST)
        assert (await llm.ainvoke("abc")).content == "cba"
    assert provider.finds == 1  # looked for once, not found
    assert session.stats.requests_resumed == 1 and session.stats.lines_failed == 1
    assert session.stats.batches_created == 1  # then sent again, in a batch of its own
    entries = json.loads(state.read_text())["batches"]
    assert entries[0]["status"] == "expired" and entries[0]["id"] is None
    assert entries[1]["custom_ids"] == [cid.removesuffix("-0") + "-1"]
    # a later session does not look for it again: it has ended
    again = Memory(found=BatchStatus("b9", "ended", True))
    async with BatchSession(Routed(route=None), BatchOptions(state_path=state, **OPTIONS),
                            provider=again) as session:  # fmt: skip
        again.batches.update(provider.batches)
        llm = with_budget(session.chat_model, RateBudget(), retry=FAST)
        assert (await llm.ainvoke("abc")).content == "cba"
    assert again.finds == 0 and session.stats.batches_created == 0
