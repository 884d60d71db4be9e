"""Best of k: run k candidate summaries of one input, keep the one most faithful to its source.

Each candidate is scored by two terms, added (:func:`candidate_score`):

- **faithfulness**: its ROUGE-L precision against the source text the model
  was given, the share of the candidate's words that appear, in order, in
  the source (Lin 2004, "ROUGE: A Package for Automatic Evaluation of
  Summaries"; Google's ``rouge-score``, Porter stemmer). A cheap lexical
  stand-in for the reranking of Falke et al. 2019 ("Ranking Generated
  Summaries by Correctness", ACL), who rerank a summarizer's candidates by
  whether the source entails them, to keep statements the source does not
  support out of the summary;
- **agreement**: its mean ROUGE-L F1 against the other candidates, the
  minimum-Bayes-risk choice (Kumar and Byrne 2004, "Minimum Bayes-Risk
  Decoding for Statistical Machine Translation", NAACL; Bertsch et al. 2023,
  "It's MBR All the Way Down", arXiv:2310.01387): what most candidates say
  is kept over what one makes up.

A small model's candidates differ mostly in what they make up. On the first
100 shared news articles (issue 23, docs/benchmarks.md), over the three news
wordings' replies, choosing by faithfulness alone reached 90.5% of lead-N on
ROUGE-L, by agreement alone 88.1%, by both 91.5%; the first wording alone 87%.

Candidates run at once (one model call each, through the same model and
budget); a candidate that fails is left out, and the item fails only when
all of them do. The choice is noted for the record (a :data:`NOTE_EVENT`
custom event, ``{"candidates": k, "candidate_chosen": i}`` and
``"candidates_failed"`` when some failed).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any, cast

from langchain_core.callbacks import adispatch_custom_event
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from lc_async_pipelines.runner.notes import NOTE_EVENT

__all__ = ["best_of", "candidate_score", "faithfulness"]


@functools.cache
def _scorer() -> Any:
    # Imported on first use: rouge-score brings nltk (a fraction of a second).
    from rouge_score import rouge_scorer  # type: ignore[import-untyped]

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def faithfulness(candidate: str, source: str) -> float:
    """Return the ROUGE-L precision of ``candidate`` against ``source`` (module docstring).

    Args:
        candidate: a summary.
        source: the text its model was given.

    Returns:
        A share from 0.0 to 1.0: 1.0 when every word of ``candidate``
        appears, in order, in ``source``; 0.0 for a candidate with no words.
    """
    return float(_scorer().score(source, candidate)["rougeL"].precision)


def candidate_score(candidate: str, others: Sequence[str], source: str) -> float:
    """Return a candidate's score: faithfulness to ``source`` plus agreement with ``others``.

    Args:
        candidate: one summary.
        others: the other candidates (an empty sequence: no agreement term).
        source: the text the model was given.

    Returns:
        From 0.0 to 2.0: :func:`faithfulness`, plus the mean ROUGE-L F1 of
        ``candidate`` against each of ``others`` (module docstring).
    """
    agreement = (
        sum(_scorer().score(other, candidate)["rougeL"].fmeasure for other in others) / len(others)
        if others
        else 0.0
    )
    return faithfulness(candidate, source) + float(agreement)


def best_of(
    steps: Sequence[Runnable[dict[str, Any], str]], *, source: str = "text", name: str = "best_of"
) -> Runnable[dict[str, Any], str]:
    """Return a step that runs every one of ``steps`` and keeps the best-scored output.

    Args:
        steps: the candidates, each the prompt's variables in and a summary
            out; the first wins ties. One step is returned as it is.
        source: the variable holding the text the model sees, scored against.
        name: the step's run name.

    Returns:
        ``Runnable[dict, str]``: the variables in, the chosen summary out
        (under ``astream``, in one chunk once all candidates are done), the
        one of highest :func:`candidate_score`.

    Raises:
        ValueError: ``steps`` is empty.
        Exception: the first candidate's error when every candidate fails.
    """
    if not steps:
        msg = "best_of needs at least one step"
        raise ValueError(msg)
    if len(steps) == 1:
        return steps[0]

    async def choose(variables: dict[str, Any], config: RunnableConfig) -> str:
        outcomes = await asyncio.gather(
            *(step.ainvoke(variables, config) for step in steps), return_exceptions=True
        )
        done = [(i, out) for i, out in enumerate(outcomes) if isinstance(out, str)]
        if not done:
            raise next(out for out in outcomes if isinstance(out, BaseException))
        text = str(variables.get(source, ""))
        texts = [out for _, out in done]
        scores = [
            candidate_score(out, texts[:i] + texts[i + 1 :], text) for i, out in enumerate(texts)
        ]
        best = max(range(len(done)), key=lambda i: (scores[i], -i))
        chosen, summary = done[best]
        note: dict[str, int] = {"candidates": len(steps), "candidate_chosen": chosen}
        if len(done) < len(steps):
            note["candidates_failed"] = len(steps) - len(done)
        await adispatch_custom_event(NOTE_EVENT, note, config=config)
        return summary

    return cast("Runnable[dict[str, Any], str]", RunnableLambda(choose, name=name))
