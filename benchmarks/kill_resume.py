"""``pipelines run`` killed by SIGKILL three times and resumed: what is lost, twice, leaked.

Starts the mock (``benchmarks/mock_server.py``) on loopback with 20% faults and
``--echo-headers`` (a leaky endpoint: its error bodies carry the request's
headers, ``Authorization: Bearer <key>`` included), writes ``--items`` topics
to a ``.txt`` file, and runs, in a fresh folder::

    python -m lc_async_pipelines run story --input topics.txt --output out.jsonl
        --cache cache.sqlite --concurrency 32

with ``OPENAI_BASE_URL=<mock>/v1``, ``OPENAI_API_KEY=sk-harness-SECRET-0123456789``,
``PIPELINES_MODEL=mock`` and ``PIPELINES_TIMEOUT=5``. Each session is killed
with ``SIGKILL`` once the records file holds a random number of lines (three
points, e.g. about 150, 400 and 700 of 1,000), and the same command resumes;
the last session runs to its end (and, if it left failed items, at most
``--finish`` more sessions run them again, as a user would).

Printed: records, distinct ids, items done, items twice (must be 0), missing
items, mismatched outputs (the mock answers ``"echo: <prompt>"``, so each
output must hold its own topic), occurrences of the key and of ``Bearer`` in
the records, the summary, the manifest and every session's stderr (must be 0),
and the answers the mock served whole (status 200) per distinct prompt: a
prompt served twice is a finished call paid twice. Each such repeat is checked
against the kills: it is explained when a kill fell between the two servings
and, in the snapshot taken right after that kill, the answer was neither in the
cache nor the item in the records (the call was in flight: its answer never
reached the cache); at most the in-flight window (``--concurrency``) per kill.
Anything else is unexplained. Exit 1 when an invariant fails.

    python -m benchmarks.kill_resume                     # 1,000 items, 3 kills, random points
    python -m benchmarks.kill_resume --seed 7 --kills 150,400,700

Everything stays on loopback, and every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.mock_server import spawn

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-harness-SECRET-0123456789"
TOPIC = re.compile(r"harbour (\d{5}) ")
# proxies would take loopback traffic elsewhere: the runs never see them
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def topic(i: int) -> str:
    # zero-padded and closed by a word: no topic is a substring of another
    return f"the harbour {i:05d} lighthouse"


@dataclass
class Session:
    """One run of the command: when it was killed, how it ended."""

    number: int
    kill_at: int | None  # kill once the file holds this many lines; None: run to the end
    started: float = 0.0
    ended: float = 0.0
    lines_at_kill: int | None = None
    returncode: int | None = None
    killed: bool = False
    note: str = ""
    # snapshots taken right after a kill: topics whose answer is in the cache,
    # and topics whose record is done in the file
    cached: set[int] = field(default_factory=set)
    done: set[int] = field(default_factory=set)


def mock(args: argparse.Namespace, log: Path) -> contextlib.AbstractContextManager[str]:
    options = ("--fault-rate", str(args.fault_rate), "--seed", str(args.seed),
               "--latency", str(args.latency), "--token-delay", str(args.token_delay),
               "--hang", str(args.hang), "--echo-headers")  # fmt: skip
    return spawn(*options, log=log)


def child_env(base: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    for name in ("PIPELINES_EMBEDDED_URL", "PIPELINES_EMBEDDED", "OPENAI_ORG_ID"):
        env.pop(name, None)
    env.update(
        OPENAI_BASE_URL=base + "/v1",
        OPENAI_API_KEY=KEY,
        PIPELINES_MODEL="mock",
        PIPELINES_TIMEOUT="5",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


def line_count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def cached_topics(cache: Path) -> set[int]:
    """Topics whose answer is in the SQLite cache (read-only; the writer is dead)."""
    if not cache.exists():
        return set()
    db = sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute("SELECT prompt FROM llm_cache").fetchall()
    finally:
        db.close()
    return {int(m.group(1)) for (prompt,) in rows for m in TOPIC.finditer(prompt)}


def records(out: Path) -> tuple[list[dict[str, Any]], int]:
    """The records of ``out`` and how many lines are not records."""
    found, bad = [], 0
    if not out.exists():
        return found, bad
    for raw in out.read_bytes().split(b"\n"):
        if not raw:
            continue
        try:
            found.append(json.loads(raw))
        except ValueError:
            bad += 1
    return found, bad


def done_topics(out: Path) -> set[int]:
    found, _ = records(out)
    return {
        int(m.group(1))
        for r in found
        if r.get("error") is None
        for m in [TOPIC.search(str(r.get("input")))]
        if m
    }


def run_session(session: Session, cmd: list[str], env: dict[str, str], work: Path,
                timeout: float) -> None:  # fmt: skip
    out = work / "out.jsonl"
    with (work / f"stderr-{session.number}.txt").open("wb") as err:
        session.started = time.time()
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if session.kill_at is not None and line_count(out) >= session.kill_at:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(30)
                    session.killed = True
                    session.lines_at_kill = line_count(out)
                    break
                time.sleep(0.02)
            if proc.poll() is None:  # past the deadline: a hang, which is a finding
                session.note = f"still running after {timeout:.0f} s; killed"
                proc.kill()
                proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    session.ended = time.time()
    session.returncode = proc.returncode
    if session.kill_at is not None and not session.killed and not session.note:
        session.note = f"ended (exit {proc.returncode}) before {session.kill_at} lines"
    if session.killed:
        session.cached = cached_topics(work / "cache.sqlite")
        session.done = done_topics(out)


def count_in(paths: list[Path], needle: str) -> int:
    data = needle.encode()
    return sum(p.read_bytes().count(data) for p in paths if p.exists())


def kill_points(args: argparse.Namespace, rng: random.Random) -> list[int]:
    if args.kills:
        return sorted(int(x) for x in args.kills.split(","))
    n = args.items
    return [rng.randint(int(n * (0.10 + 0.25 * i)), int(n * (0.25 + 0.25 * i))) for i in range(3)]


def explain(
    served_again: dict[str, list[float]], kills: list[Session]
) -> tuple[Counter[int], list[str]]:
    """Per kill, the repeats it explains; and the repeats no kill explains, with why."""
    per_kill: Counter[int] = Counter()
    unexplained: list[str] = []
    for prompt, times in served_again.items():
        m = TOPIC.search(prompt)
        t = int(m.group(1)) if m else -1
        for earlier, later in itertools.pairwise(times):
            kill = next((k for k in kills if earlier <= k.ended < later), None)
            if kill is None:
                unexplained.append(f"topic {t}: served again with no kill between")
            elif t in kill.cached:
                unexplained.append(f"topic {t}: in the cache at kill {kill.number}, paid again")
            elif t in kill.done:
                unexplained.append(f"topic {t}: done in the file at kill {kill.number}, run again")
            else:
                per_kill[kill.number] += 1
    return per_kill, unexplained


def table(rows: list[tuple[str, Any]], title: str) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}")
    print("-" * (width + 14))
    for name, value in rows:
        print(f"{name:<{width}}  {value!s:>11}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--kills", help="kill points in lines, e.g. 150,400,700 (default: random)")
    parser.add_argument("--seed", type=int, help="kill points, mock faults (default: random)")
    parser.add_argument("--latency", type=float, default=0.05, help="mock: seconds to answer")
    parser.add_argument("--token-delay", type=float, default=0.002, help="mock: seconds a word")
    parser.add_argument("--hang", type=float, default=8.0, help="mock: seconds a hang lasts")
    parser.add_argument("--session-timeout", type=float, default=300.0)
    parser.add_argument("--finish", type=int, default=2, help="extra sessions for failed items")
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temp dir)")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    rng = random.Random(args.seed)
    points = kill_points(args, rng)

    with contextlib.ExitStack() as stack:
        if args.workdir:
            work = args.workdir.resolve()
            work.mkdir(parents=True, exist_ok=True)
            if any(work.iterdir()):
                raise SystemExit(f"--workdir {work}: not empty (a run needs a fresh folder)")
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kill-resume-")))
        topics = [topic(i) for i in range(args.items)]
        (work / "topics.txt").write_text("\n".join(topics) + "\n")
        cmd = [sys.executable, "-m", "lc_async_pipelines", "run", "story",
               "--input", "topics.txt", "--output", "out.jsonl", "--cache", "cache.sqlite",
               "--concurrency", str(args.concurrency)]  # fmt: skip
        kept = "kept" if args.workdir else "removed at the end; --workdir keeps it"
        print(f"seed {args.seed}; kill points {points}; {args.items} items; in {work} ({kept})")
        print("command: " + " ".join(["python", *cmd[1:]]))
        base = stack.enter_context(mock(args, work / "mock.log"))
        env = child_env(base)
        sessions = [Session(i + 1, kill_at=p) for i, p in enumerate(points)]
        sessions.append(Session(len(sessions) + 1, kill_at=None))
        for session in sessions:
            run_session(session, cmd, env, work, args.session_timeout)
            print(
                f"session {session.number}: "
                + (f"killed at {session.lines_at_kill} lines" if session.killed else "")
                + (f"exit {session.returncode}" if not session.killed else "")
                + (f" ({session.note})" if session.note else ""),
                flush=True,
            )
        for _ in range(args.finish):
            if sessions[-1].returncode != 1:
                break
            session = Session(len(sessions) + 1, kill_at=None)
            run_session(session, cmd, env, work, args.session_timeout)
            print(f"session {session.number} (failed items again): exit {session.returncode}")
            sessions.append(session)
        with httpx.Client(trust_env=False, timeout=10) as client:
            stats = client.get(base + "/stats").json()
        return report(args, work, topics, sessions, stats)
    return 1  # not reached: the with block returns


def report(args: argparse.Namespace, work: Path, topics: list[str], sessions: list[Session],
           stats: dict[str, Any]) -> int:  # fmt: skip
    out = work / "out.jsonl"
    found, bad = records(out)
    ids = Counter(r.get("id") for r in found)
    per_input = Counter(r.get("input") for r in found)  # an id is its input's hash
    done = [r for r in found if r.get("error") is None]
    failed = [r for r in found if r.get("error") is not None]
    inputs = {r.get("input") for r in done}
    twice = len({i for i, n in ids.items() if n > 1} | {i for i, n in per_input.items() if n > 1})
    missing = sum(1 for t in topics if t not in per_input)  # no record at all
    mismatched = sum(1 for r in done if str(r.get("input")) not in str(r.get("output") or ""))
    summary_file = work / "out.jsonl.summary.json"
    manifest_file = work / "out.jsonl.manifest.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    stderr = sorted(work.glob("stderr-*.txt"))
    tracebacks = sum(p.read_text(errors="replace").count("Traceback") for p in stderr)
    places = {"records": [out], "summary": [summary_file], "manifest": [manifest_file],
              "stderr": stderr}  # fmt: skip
    leaks = {
        (needle, where): count_in(paths, needle)
        for needle in (KEY, "Bearer", "bearer")
        for where, paths in places.items()
    }
    by_prompt: dict[str, int] = stats.get("completions_by_prompt", {})
    served_again: dict[str, list[float]] = stats.get("served_again", {})
    repeats = sum(n - 1 for n in by_prompt.values())
    kills = [s for s in sessions if s.killed]
    per_kill, unexplained = explain(served_again, kills)
    over_bound = [k for k, n in per_kill.items() if n > args.concurrency]

    table(
        [
            (
                f"session {s.number}",
                f"killed@{s.lines_at_kill}" if s.killed else f"exit {s.returncode}",
            )
            for s in sessions
        ],
        "sessions (kill -9 once the file held N lines)",
    )
    rows: list[tuple[str, Any]] = [
        ("records (lines)", len(found)),
        ("lines that are not records", bad),
        ("distinct ids", len(ids)),
        ("items", len(topics)),
        ("items done", len(inputs)),
        ("items failed (final)", len(failed)),
        ("items missing", missing),
        ("items twice (must be 0)", twice),
        ("mismatched outputs (0)", mismatched),
        ("manifest sessions", manifest.get("sessions")),
        ("summary sessions", summary.get("sessions")),
        ("summary done", summary.get("done")),
        ("tracebacks in stderr", tracebacks),
    ]
    rows += [
        (f"{'key' if needle == KEY else repr(needle)} in {where} (0)", n)
        for (needle, where), n in leaks.items()
    ]
    rows += [
        ("mock requests", stats.get("requests")),
        ("mock faults injected", sum(v for k, v in stats.items() if k.startswith("fault_"))),
        ("mock answers served (200)", stats.get("completed")),
        ("distinct prompts served", len(by_prompt)),
        ("prompts served > once", len(served_again)),
        ("repeat servings (paid twice)", repeats),
        *((f"  explained by kill {s.number}", per_kill[s.number]) for s in kills),
        ("  unexplained (0)", len(unexplained)),
        (f"  bound per kill (in flight <= {args.concurrency})", "ok" if not over_bound else "OVER"),
        *(
            (f"answered, not yet recorded at kill {s.number} (cache)", len(s.cached - s.done))
            for s in kills
        ),
        ("summary requests_sent (last session)", summary.get("requests_sent")),
        ("summary cache_hits (last session)", summary.get("cache_hits")),
    ]
    table(rows, "figures")
    for line in unexplained[:20]:
        print("unexplained: " + line)
    problems = [
        name
        for name, bad_value in [
            ("not records", bad),
            ("twice", twice),
            ("missing", missing),
            ("mismatched", mismatched),
            ("tracebacks", tracebacks),
            ("leaks", sum(leaks.values())),
            ("unexplained repeats", len(unexplained)),
            ("over the in-flight bound", len(over_bound)),
            ("sessions not counted", manifest.get("sessions") != len(sessions)),
            ("hung session", sum(1 for s in sessions if "still running" in s.note)),
        ]
        if bad_value
    ]
    print("\nresult: " + ("ok" if not problems else "FAILED: " + ", ".join(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
