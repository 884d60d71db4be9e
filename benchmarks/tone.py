"""The news analysis' tone step on the shared news data: tone distribution and agreement.

Prints figures, asserts nothing. Reads the first ``--articles`` articles of
``news_summaries/writer_summaries.json`` (from ``$PIPELINES_DATA_DIR`` or
``../shared/data``, in place) and gives each article's text to the tone step
(:func:`lc_async_pipelines.news._tone.build_tone_step`), once per method asked:

- ``auto``: the step as the news pipeline builds it (calibrated
  log-probabilities on a ``ChatOpenAI``, the embedded model included, else
  the constrained choice);
- ``choice``: the constrained choice alone (``logprobs=False``).

**Reference tones** come from the human summaries, by a published lexicon
rather than by us: VADER (Hutto and Gilbert 2014, "VADER: A Parsimonious
Rule-based Model for Sentiment Analysis of Social Media Text", ICWSM; the
``vaderSentiment`` package, MIT). Each summary's compound score, averaged over
the article's summaries, is ``positive`` at 0.05 or more, ``negative`` at
-0.05 or less, else ``neutral`` (VADER's documented thresholds). An article is
*unanimous* when each of its summaries alone gets the same tone. VADER is
a sentiment lexicon, not a reader of news: the references are an
approximation, and a step can only be compared with them, not scored.

For each method the script prints the tones' distribution, the agreement
with the references on all articles and on the unanimous ones, beside the
baseline that always answers the references' most frequent tone, and the
confusion counts. The model comes from ``lc_async_pipelines.model_session``
(an endpoint from the environment, ``PIPELINES_EMBEDDED_URL``, or an embedded
``llama-server`` started here with ``--concurrency`` slots).

Run: ``.venv/bin/python -m benchmarks.tone [--articles 50] [--methods auto,choice]
[--concurrency 2] [--output out/tone.json]``. The header line gives the date and commit.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaderSentiment.vaderSentiment import (  # type: ignore[import-untyped]
    SentimentIntensityAnalyzer,
)

from lc_async_pipelines import model_session
from lc_async_pipelines.news._tone import TONES, build_tone_step

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PIPELINES_DATA_DIR", ROOT.parent / "shared" / "data"))
NEWS_FILE = DATA / "news_summaries" / "writer_summaries.json"
# VADER's thresholds on the compound score (its README, "About the Scoring")
THRESHOLD = 0.05
METHODS = {"auto": None, "choice": False}


@dataclass(frozen=True)
class Article:
    """One article, its human summaries and the tone read from them."""

    id: str
    text: str
    summaries: list[str]
    reference: str
    unanimous: bool


def vader_tone(score: float) -> str:
    if score >= THRESHOLD:
        return "positive"
    return "negative" if score <= -THRESHOLD else "neutral"


def load_articles(limit: int) -> list[Article]:
    rows = json.loads(NEWS_FILE.read_text(encoding="utf-8"))
    texts: dict[str, str] = {}
    summaries: dict[str, list[str]] = {}
    for row in rows:
        texts.setdefault(row["article_id"], row["article"])
        summaries.setdefault(row["article_id"], []).append(row["summary"])
    analyzer = SentimentIntensityAnalyzer()
    articles = []
    for key in list(texts)[:limit]:
        scores = [analyzer.polarity_scores(s)["compound"] for s in summaries[key]]
        tone = vader_tone(sum(scores) / len(scores))
        unanimous = {vader_tone(s) for s in scores} == {tone}
        articles.append(Article(key, texts[key], summaries[key], tone, unanimous))
    return articles


def agreement(answers: Sequence[str], articles: Sequence[Article], *, unanimous: bool) -> str:
    pairs = [(a, x.reference) for a, x in zip(answers, articles, strict=True)]
    if unanimous:
        pairs = [p for p, x in zip(pairs, articles, strict=True) if x.unanimous]
    same = sum(a == r for a, r in pairs)
    return f"{same}/{len(pairs)} ({same / max(len(pairs), 1):.0%})"


def report(name: str, answers: Sequence[str], articles: Sequence[Article], seconds: float) -> None:
    counts = Counter(answers)
    spread = ", ".join(f"{t} {counts[t]}" for t in TONES)
    print(f"{name:9} tones: {spread}; {seconds:.0f} s")
    print(
        f"{'':9} agreement: {agreement(answers, articles, unanimous=False)} of all, "
        f"{agreement(answers, articles, unanimous=True)} of the unanimous"
    )
    confusion = Counter((x.reference, a) for a, x in zip(answers, articles, strict=True))
    rows = [
        f"{r[:3]}->" + "/".join(str(confusion[(r, a)]) for a in TONES)
        for r in TONES
        if any(confusion[(r, a)] for a in TONES)
    ]
    print(f"{'':9} reference -> neg/neu/pos answered: {'  '.join(rows)}")


async def answer(articles: Sequence[Article], method: str, concurrency: int) -> list[str]:
    async with model_session(parallel=concurrency) as session:
        step = build_tone_step(session.llm, logprobs=METHODS[method])
        inputs = [a.text for a in articles]
        tones: list[str] = await step.abatch(inputs, {"max_concurrency": concurrency})
    return tones


def commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=50)
    parser.add_argument("--methods", default="auto,choice")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or args.articles < 1:
        parser.error(f"--methods takes {', '.join(METHODS)}; --articles at least 1")
    articles = load_articles(args.articles)
    today = datetime.datetime.now(datetime.UTC).date()
    print(f"tone on {len(articles)} articles of the shared news data, {today}, commit {commit()}")
    refs = Counter(a.reference for a in articles)
    majority = refs.most_common(1)[0][0]
    print(
        f"references (VADER on the human summaries): "
        f"{', '.join(f'{t} {refs[t]}' for t in TONES)}; "
        f"unanimous {sum(a.unanimous for a in articles)}"
    )
    report(f"'{majority[:3]}' all", [majority] * len(articles), articles, 0.0)
    results: dict[str, Any] = {"articles": [a.id for a in articles], "references": {}}
    results["references"] = {a.id: a.reference for a in articles}
    for method in methods:
        started = time.monotonic()
        tones = await answer(articles, method, args.concurrency)
        report(method, tones, articles, time.monotonic() - started)
        results[method] = dict(zip(results["articles"], tones, strict=True))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
