"""Summary quality on the shared data: ROUGE beside a lead-N baseline, loops, length.

Prints figures, asserts nothing. Two sets, from ``$PIPELINES_DATA_DIR`` or
``../shared/data`` (read in place):

- **news**: the first ``--news`` articles of ``news_summaries/writer_summaries.json``
  through the stuff chain (``build_summary_chain``), scored against all the
  writer summaries of their article;
- **stories**: the first ``--stories`` stories of ``long_stories/squality_test.jsonl``
  through map-reduce (``build_map_reduce_summary_chain``), scored against the
  four answers to question 1, "What is the plot of the story?".

Each set runs once per ``kind`` asked (``--news-kinds``, ``--story-kinds``;
default ``auto``, which guesses each document's kind; the row counts the
guesses). Each row sits beside a lead-N baseline at the same length: the
document's first N words, N the median length of that row's summaries.
Besides ROUGE a row counts off-task openings (summaries that still open
with text about the text, :func:`lc_async_pipelines.on_task.off_task_opening`,
after the chain's retry and trim) and the retries the chain made (its
``off_task_retries`` notes). Scores are ROUGE-1, ROUGE-2 and ROUGE-L F1 from Google's
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
[--story-words 150] [--news-kinds auto,news] [--story-kinds auto] [--concurrency 4]
[--output out/quality.json]``. The table's header line gives the date and commit.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rouge_score import rouge_scorer  # type: ignore[import-untyped]

from lc_async_pipelines import build_map_reduce_summary_chain, build_summary_chain, model_session
from lc_async_pipelines.kinds import KINDS, guess_kind
from lc_async_pipelines.on_task import off_task_opening
from lc_async_pipelines.runner.notes import ItemNotes

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


@dataclass
class Outcome:
    """One document's summary and what the chain noted (kind, off-task retries)."""

    summary: str
    notes: dict[str, Any] = field(default_factory=dict)


def score_set(
    name: str,
    outcomes: Sequence[Outcome],
    docs: Sequence[Doc],
    asked: int,
    scorer: Any,
    kind: str = "auto",
) -> dict[str, Any]:
    """Return one table row for the summaries of ``docs``: means, lead-N, length, loops, off-task.

    The lead-N baseline takes the first N words of each document, N the
    median words of these summaries (the same length). An opening is judged
    off task for the kind the chain used (its ``kind`` note), else ``kind``.

    Returns:
        ``{"name", "kind", "n", "asked_words", "rouge1", "rouge2", "rougeL" (mean F1),
        "lead_words", "lead_rouge1", "lead_rouge2", "lead_rougeL", "median_words",
        "median_over_asked", "within_30pct" (share 0..1), "distinct3" (mean),
        "loops" (count under 0.7), "repeats_dropped" (sentences the chains left out
        as repeats, all calls), "lengthened" (short summaries given one more
        call, all steps), "off_task" (openings still off task),
        "off_task_retries", "kinds" (kind used: count), "failed", "items": [...]}``.
    """
    items: list[dict[str, Any]] = []
    for doc, out in zip(docs, outcomes, strict=True):
        used = str(out.notes.get("kind", guess_kind(doc.text) if kind == "auto" else kind))
        items.append(
            {
                "id": doc.id,
                "kind": used,
                "words": len(out.summary.split()),
                "distinct3": round(distinct_3gram_ratio(out.summary), 4),
                "off_task": off_task_opening(out.summary, kind=used),
                "off_task_retries": int(out.notes.get("off_task_retries", 0)),
                "repeats_dropped": int(out.notes.get("repeats_dropped", 0)),
                "lengthened": int(out.notes.get("lengthened", 0)),
                **{
                    k: round(v, 4) for k, v in rouge_f1(scorer, out.summary, doc.references).items()
                },
                "summary": out.summary,
            }
        )
    median_words = statistics.median(i["words"] for i in items)
    lead_n = max(1, round(median_words))
    leads = [rouge_f1(scorer, lead_words(d.text, lead_n), d.references) for d in docs]
    return {
        "name": name,
        "kind": kind,
        "n": len(items),
        "asked_words": asked,
        **{k: round(statistics.mean(i[k] for i in items), 4) for k in ROUGE_TYPES},
        "lead_words": lead_n,
        **{f"lead_{k}": round(statistics.mean(lead[k] for lead in leads), 4) for k in ROUGE_TYPES},
        "median_words": median_words,
        "median_over_asked": round(median_words / asked, 3),
        "within_30pct": round(
            sum(within_tolerance(i["words"], asked) for i in items) / len(items), 3
        ),
        "distinct3": round(statistics.mean(i["distinct3"] for i in items), 4),
        "loops": sum(i["distinct3"] < LOOP_THRESHOLD for i in items),
        "repeats_dropped": sum(i["repeats_dropped"] for i in items),
        "lengthened": sum(i["lengthened"] for i in items),
        "off_task": sum(i["off_task"] for i in items),
        "off_task_retries": sum(i["off_task_retries"] for i in items),
        "kinds": dict(Counter(i["kind"] for i in items).most_common()),
        "failed": sum(not o.summary for o in outcomes),
        "items": items,
    }


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Return the rows of :func:`score_set` as a markdown table (model beside lead-N)."""
    lines = [
        "| set | kind asked (used) | n | ROUGE-1 / lead | ROUGE-2 / lead | ROUGE-L / lead "
        "| ROUGE-L vs lead | off-task openings (retries) | loops (repeats dropped) "
        "| median words / asked "
        "| within ±30 % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        used = ", ".join(f"{k} {n}" for k, n in r["kinds"].items())
        ratio = r["rougeL"] / r["lead_rougeL"] if r["lead_rougeL"] else float("nan")
        lines.append(
            f"| {r['name']} | {r['kind']} ({used}) | {r['n']} "
            + " ".join(f"| {r[k]:.3f} / {r['lead_' + k]:.3f}" for k in ROUGE_TYPES)
            + f" | {ratio:.0%} | {r['off_task']} ({r['off_task_retries']}) "
            f"| {r['loops']} ({r.get('repeats_dropped', 0)}) "
            f"| {r['median_words']:g} / {r['asked_words']} ({r['median_over_asked']:.2f}) "
            f"| {r['within_30pct']:.0%} |"
        )
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    """Write ``result`` to ``path`` as JSON (paths among the arguments as strings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1, ensure_ascii=False, default=str)
    path.write_text(text + "\n", encoding="utf-8")


async def _one(chain: Any, doc: Doc, config: dict[str, Any]) -> Outcome:
    notes = ItemNotes()
    try:
        summary = await chain.ainvoke(doc.text, {**config, "callbacks": [notes]})
    except Exception as exc:  # a failed document scores as empty, and is counted
        print(f"{doc.id} failed: {type(exc).__name__}", file=sys.stderr)
        summary = ""
    return Outcome(summary, notes.notes)


async def summarize_news(
    llm: Any,
    docs: Sequence[Doc],
    words: int,
    concurrency: int,
    kind: str = "auto",
    candidates: int = 1,
) -> list[Outcome]:
    chain = build_summary_chain(llm, max_words=words, kind=kind, candidates=candidates)  # type: ignore[arg-type]
    gate = asyncio.Semaphore(concurrency)

    async def one(doc: Doc) -> Outcome:
        async with gate:
            return await _one(chain, doc, {})

    return list(await asyncio.gather(*(one(d) for d in docs)))


async def summarize_stories(
    llm: Any, docs: Sequence[Doc], words: int, concurrency: int, kind: str = "auto"
) -> list[Outcome]:
    chain = build_map_reduce_summary_chain(llm, max_words=words, kind=kind)  # type: ignore[arg-type]
    # one story at a time; its chunks are mapped `concurrency` at once
    return [await _one(chain, d, {"max_concurrency": concurrency}) for d in docs]


def commit() -> str:
    """Return the checkout's short commit, with ``+`` when it has changes ("?" without git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + ("+" if dirty else "")  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = commit()  # the code that runs: read now, not after a long run
    scorer = make_scorer()
    news = load_news(limit=args.news)
    stories = load_stories(limit=args.stories)
    news_words = args.words or median_reference_words()
    rows: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    async with model_session(parallel=args.concurrency) as session:
        print(session.description, flush=True)
        for kind, k in itertools.product(args.news_kinds if news else [], args.candidates):
            start = time.perf_counter()
            outs = await summarize_news(session.llm, news, news_words, args.concurrency, kind, k)
            timings[f"news_{kind}_best_of_{k}_s"] = round(time.perf_counter() - start, 1)
            name = "news (stuff)" if k == 1 else f"news (stuff, best of {k})"
            rows.append(score_set(name, outs, news, news_words, scorer, kind))
            print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)
        for kind in args.story_kinds if stories else []:
            start = time.perf_counter()
            outs = await summarize_stories(
                session.llm, stories, args.story_words, args.concurrency, kind
            )
            timings[f"stories_{kind}_s"] = round(time.perf_counter() - start, 1)
            rows.append(
                score_set("stories (map-reduce)", outs, stories, args.story_words, scorer, kind)
            )
            print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)
        model = session.description
        temperature = session.settings.temperature
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": started,
        "model": model,
        "temperature": temperature,
        "args": vars(args) | {"words": news_words},
        "rouge": "F1, max over references (RougeScorer.score_multi), mean over documents",
        "timings": timings,
        "rows": rows,
    }


def _counts(value: str) -> list[int]:
    try:
        counts = [int(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not whole numbers: {value!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"counts must be at least 1: {value!r}")
    return counts


def _kinds(value: str) -> list[str]:
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        msg = f"kinds are {', '.join(KINDS)}; got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return kinds


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
    parser.add_argument(
        "--news-kinds", type=_kinds, default=["auto"],
        help="kinds to run the news with, comma-separated (default auto)",
    )  # fmt: skip
    parser.add_argument(
        "--story-kinds", type=_kinds, default=["auto"],
        help="kinds to run the stories with, comma-separated (default auto)",
    )  # fmt: skip
    parser.add_argument(
        "--candidates",
        type=_counts,
        default=[1],
        help="news summaries written per article, the best kept; comma-separated "
        "to compare (default 1)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="calls at once (default 4)")
    parser.add_argument("--output", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    print(f"{result['date']}, commit {result['commit']}, {result['model']}")
    print(markdown_table(result["rows"]))
    print(f"timings: {result['timings']}")
    if args.output:
        write_json(result, args.output)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
