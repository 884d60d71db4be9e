"""Summary quality on the shared data: ROUGE beside a lead-N baseline, loops, length.

Prints figures, asserts nothing. Two sets, from ``$PIPELINES_DATA_DIR`` or
``../shared/data`` (read in place):

- **news**: the first ``--news`` articles of ``news_summaries/writer_summaries.json``
  through the stuff chain (``build_summary_chain``), scored against all the
  writer summaries of their article;
- **stories**: the first ``--stories`` stories of ``long_stories/squality_test.jsonl``
  through map-reduce (``build_map_reduce_summary_chain``), scored against the
  four answers to question 1, "What is the plot of the story?".

Each set also scores a lead-N baseline: the document's first N words, N being
the asked length. Scores are ROUGE-1, ROUGE-2 and ROUGE-L F1 from Google's
``rouge-score`` package (Porter stemmer, which is plain code in nltk: no data
download), taking for each summary the reference it matches best
(``RougeScorer.score_multi``: the maximum F1 over references), then the mean
over documents. Repetition loops: the distinct 3-gram ratio (distinct-n of Li
et al. 2016, arXiv:1510.03055), and how many summaries fall under 0.7. Length:
the median of words (``str.split``) over the asked length, and the share
within ±30% of it (0.7N to 1.3N words).

The model comes from ``lc_async_pipelines.model_session``: an endpoint from the
environment, a shared embedded server (``PIPELINES_EMBEDDED_URL``), or else an
embedded ``llama-server`` started here with ``--concurrency`` slots.

Run: ``.venv/bin/python -m benchmarks.quality [--news 20] [--stories 3] [--words N]
[--story-words 150] [--concurrency 4] [--output out/quality.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rouge_score import rouge_scorer  # type: ignore[import-untyped]

from lc_async_pipelines import build_map_reduce_summary_chain, build_summary_chain, model_session

ROOT = Path(__file__).resolve().parents[1]
# As the tests find it: $PIPELINES_DATA_DIR, else the project's ../shared/data.
DATA = Path(os.environ.get("PIPELINES_DATA_DIR", ROOT.parent / "shared" / "data"))
NEWS_FILE = DATA / "news_summaries" / "writer_summaries.json"
STORIES_FILE = DATA / "long_stories" / "squality_test.jsonl"
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
TOLERANCE = 0.3  # the length promise: within ±30% of the asked words
LOOP_THRESHOLD = 0.7  # distinct 3-gram ratio under this: a repetition loop
DEFAULT_STORY_WORDS = 150


@dataclass(frozen=True)
class Doc:
    """One document to summarize and the human summaries it is scored against."""

    id: str
    text: str
    references: list[str]


def load_news(path: Path = NEWS_FILE, limit: int | None = None) -> list[Doc]:
    """Return the news articles in file order, each with all its writer summaries."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    docs: dict[str, Doc] = {}
    for row in rows:
        doc = docs.setdefault(
            str(row["article_id"]), Doc(str(row["article_id"]), row["article"], [])
        )
        doc.references.append(row["summary"].strip())
    return list(docs.values())[:limit]


def load_stories(path: Path = STORIES_FILE, limit: int | None = None) -> list[Doc]:
    """Return the stories in file order, with the answers to question 1 (the plot) as references."""
    docs: list[Doc] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if limit is not None and len(docs) >= limit:
                break
            row = json.loads(line)
            plot = next(q for q in row["questions"] if q["question_number"] == 1)
            refs = [r["response_text"].strip() for r in plot["responses"]]
            docs.append(Doc(str(row["metadata"]["passage_id"]), row["document"], refs))
    return docs


def median_reference_words(path: Path = NEWS_FILE) -> int:
    """Return the median length, in words, of all writer summaries in the news file."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    return round(statistics.median(len(row["summary"].split()) for row in rows))


def lead_words(text: str, n: int) -> str:
    """Return the first ``n`` words of ``text``, joined by single spaces (the lead-N baseline)."""
    return " ".join(text.split()[:n])


def distinct_3gram_ratio(text: str) -> float:
    """Return distinct word 3-grams over all 3-grams, lower-cased (1.0: no repeats; 1.0 if none)."""
    words = text.lower().split()
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return len(set(grams)) / len(grams) if grams else 1.0


def within_tolerance(words: int, asked: int, tolerance: float = TOLERANCE) -> bool:
    """Tell whether ``words`` lies within ``asked`` ± ``tolerance`` (ends included)."""
    # Rounded to whole words as the chains count them: 0.7 * 10 is 7, not 7.000000000000001.
    return (
        math.ceil(round(asked * (1 - tolerance), 6))
        <= words
        <= math.floor(round(asked * (1 + tolerance), 6))
    )


def make_scorer() -> Any:
    """Return the ROUGE-1/2/L scorer with the Porter stemmer."""
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_f1(scorer: Any, summary: str, references: Sequence[str]) -> dict[str, float]:
    """Return ROUGE-1/2/L F1 of ``summary`` against the reference it matches best, per type."""
    scores = scorer.score_multi(list(references), summary)
    return {kind: float(scores[kind].fmeasure) for kind in ROUGE_TYPES}


def score_set(
    name: str, summaries: Sequence[str], docs: Sequence[Doc], asked: int, scorer: Any
) -> dict[str, Any]:
    """Return one table row for ``summaries`` of ``docs``: means, length and loop figures.

    Returns:
        ``{"name", "n", "asked_words", "rouge1", "rouge2", "rougeL" (mean F1),
        "median_words", "median_over_asked", "within_30pct" (share 0..1),
        "distinct3" (mean), "loops" (count under 0.7), "items": [...]}``.
    """
    items: list[dict[str, Any]] = []
    for doc, summary in zip(docs, summaries, strict=True):
        words = len(summary.split())
        items.append(
            {
                "id": doc.id,
                "words": words,
                "distinct3": round(distinct_3gram_ratio(summary), 4),
                **{k: round(v, 4) for k, v in rouge_f1(scorer, summary, doc.references).items()},
                "summary": summary,
            }
        )
    median_words = statistics.median(i["words"] for i in items)
    return {
        "name": name,
        "n": len(items),
        "asked_words": asked,
        **{k: round(statistics.mean(i[k] for i in items), 4) for k in ROUGE_TYPES},
        "median_words": median_words,
        "median_over_asked": round(median_words / asked, 3),
        "within_30pct": round(
            sum(within_tolerance(i["words"], asked) for i in items) / len(items), 3
        ),
        "distinct3": round(statistics.mean(i["distinct3"] for i in items), 4),
        "loops": sum(i["distinct3"] < LOOP_THRESHOLD for i in items),
        "items": items,
    }


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Return the rows of :func:`score_set` as a markdown table."""
    lines = [
        "| set | n | ROUGE-1 | ROUGE-2 | ROUGE-L | median words / asked | within ±30 % "
        "| distinct-3 | loops (< 0.7) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['n']} | {r['rouge1']:.3f} | {r['rouge2']:.3f} | {r['rougeL']:.3f} "
            f"| {r['median_words']:g} / {r['asked_words']} ({r['median_over_asked']:.2f}) "
            f"| {r['within_30pct']:.0%} | {r['distinct3']:.3f} | {r['loops']} |"
        )
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    """Write ``result`` to ``path`` as JSON (paths among the arguments as strings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1, ensure_ascii=False, default=str)
    path.write_text(text + "\n", encoding="utf-8")


async def summarize_news(llm: Any, docs: Sequence[Doc], words: int, concurrency: int) -> list[str]:
    chain = build_summary_chain(llm, max_words=words)
    outs = await chain.abatch(
        [d.text for d in docs], {"max_concurrency": concurrency}, return_exceptions=True
    )
    return [o if isinstance(o, str) else "" for o in outs]  # a failed call scores as empty


async def summarize_stories(
    llm: Any, docs: Sequence[Doc], words: int, concurrency: int
) -> list[str]:
    chain = build_map_reduce_summary_chain(llm, max_words=words)
    outs = []
    for doc in docs:  # one story at a time; its chunks are mapped `concurrency` at once
        try:
            outs.append(await chain.ainvoke(doc.text, {"max_concurrency": concurrency}))
        except Exception as exc:  # a failed story scores as empty, and is counted
            print(f"story {doc.id} failed: {type(exc).__name__}", file=sys.stderr)
            outs.append("")
    return outs


async def run(args: argparse.Namespace) -> dict[str, Any]:
    scorer = make_scorer()
    news = load_news(limit=args.news)
    stories = load_stories(limit=args.stories)
    news_words = args.words or median_reference_words()
    rows: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    async with model_session(parallel=args.concurrency) as session:
        print(session.description, flush=True)
        if news:
            start = time.perf_counter()
            outs = await summarize_news(session.llm, news, news_words, args.concurrency)
            timings["news_s"] = round(time.perf_counter() - start, 1)
            rows.append(score_set("news, model", outs, news, news_words, scorer))
            rows[-1]["failed"] = outs.count("")
            leads = [lead_words(d.text, news_words) for d in news]
            rows.append(score_set("news, lead-N", leads, news, news_words, scorer))
        if stories:
            start = time.perf_counter()
            outs = await summarize_stories(session.llm, stories, args.story_words, args.concurrency)
            timings["stories_s"] = round(time.perf_counter() - start, 1)
            rows.append(
                score_set("stories, model (map-reduce)", outs, stories, args.story_words, scorer)
            )
            rows[-1]["failed"] = outs.count("")
            leads = [lead_words(d.text, args.story_words) for d in stories]
            rows.append(score_set("stories, lead-N", leads, stories, args.story_words, scorer))
        model = session.description
        temperature = session.settings.temperature
    return {
        "model": model,
        "temperature": temperature,
        "args": vars(args) | {"words": news_words},
        "rouge": "F1, max over references (RougeScorer.score_multi), mean over documents",
        "timings": timings,
        "rows": rows,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--news", type=int, default=20, help="news articles (default 20)")
    parser.add_argument("--stories", type=int, default=3, help="long stories (default 3)")
    parser.add_argument(
        "--words", type=int, default=None,
        help="asked length for news (default: the writer summaries' median, 48 words)",
    )  # fmt: skip
    parser.add_argument(
        "--story-words", type=int, default=DEFAULT_STORY_WORDS,
        help=f"asked length for stories (default {DEFAULT_STORY_WORDS})",
    )  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=4, help="calls at once (default 4)")
    parser.add_argument("--output", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    print(markdown_table(result["rows"]))
    print(f"timings: {result['timings']}")
    if args.output:
        write_json(result, args.output)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
