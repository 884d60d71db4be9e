"""An output file belongs to its run: manifest, lock, refusals, restart backups, resume, summary."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lc_async_pipelines.errors import ConfigurationError
from lc_async_pipelines.runner import Record, write_records
from lc_async_pipelines.runner.records import (
    MANIFEST_FORMAT,
    RunManifest,
    chain_fingerprint,
    lock_path,
    manifest_path,
    open_run,
    prepare_resume,
    run_totals,
    whole_run_summary,
)


def rec(id_: str, *, error: bool = False, tokens: int = 10, retries: int = 0) -> dict:
    history = [{"stage": "call", "error": "APIError", "status": 500, "seconds": 0.1}] * retries
    return Record(
        id=id_,
        line=1,
        input=f"in-{id_}",
        output=None if error else f"out-{id_}",
        error={"type": "Boom", "message": "m"} if error else None,
        attempts=1 + retries,
        usage={"input_tokens": tokens, "output_tokens": 2 * tokens, "total_tokens": 3 * tokens},
        history=history,
    ).to_dict()


def line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def manifest(tmp_path: Path, *, fp: str = "f" * 64, model: str = "model m1") -> RunManifest:
    return RunManifest.new(
        pipeline="story", fingerprint=fp, model=model, input=tmp_path / "in.txt", options={"a": 1}
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def lines_of(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from lc_async_pipelines.runner.records import RunManifest, open_run

    mode, out = sys.argv[1], Path(sys.argv[2])
    m = RunManifest.new(pipeline="story", fingerprint="f" * 64, model="model m1",
                        input=out.parent / "in.txt", options={"a": 1})

    def die(*_a, **_k):
        os.kill(os.getpid(), signal.SIGKILL)

    if mode == "hold":
        with open_run(out, m, restart=False):
            print("locked", flush=True)
            time.sleep(60)
    elif mode == "try":
        try:
            open_run(out, m, restart=False).close()
        except Exception as exc:
            print(type(exc).__name__, exc, flush=True)
    elif mode == "write-then-die":
        rf = open_run(out, m, restart=False)
        for i in range(3):
            rf.out.write('{"id": "k%d", "output": "o", "error": null}\\n' % i)
            rf.out.flush()
        rf.out.write('{"id": "k3", "outp')
        rf.out.flush()
        die()
    elif mode == "die-at-replace":  # a kill after the staged rewrite, before os.replace
        os.replace = die
        open_run(out, m, restart=False)
    elif mode == "die-at-second-rename":  # a kill in the middle of a restart's renames
        real, calls = os.rename, []
        def rename(src, dst):
            calls.append(src)
            if len(calls) == 2:
                die()
            real(src, dst)
        os.rename = rename
        open_run(out, m, restart=True)
    """
)


def child(mode: str, out: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(out)], stdout=subprocess.PIPE, text=True, **kw
    )


# 1. the manifest


def test_a_new_run_writes_its_manifest_beside_records_that_stay_plain_json_lines(tmp_path):
    out = tmp_path / "o.jsonl"
    m = manifest(tmp_path)
    with open_run(out, m, restart=False) as rf:
        assert rf.done_ids == frozenset() and rf.previous is None and rf.backup is None
        rf.out.write(line(rec("a")))
    written = json.loads(manifest_path(out).read_text())
    assert written["format"] == MANIFEST_FORMAT == 1
    assert written["pipeline"] == "story" and written["fingerprint"] == "f" * 64
    assert written["model"] == "model m1" and written["sessions"] == 1
    assert written["input"] == str(tmp_path / "in.txt")
    assert written["input_resolved"] == str((tmp_path / "in.txt").resolve())
    assert written["created_at"].endswith("+00:00") and written["options"] == {"a": 1}
    assert RunManifest.from_dict(written) == rf.manifest
    assert [r["id"] for r in lines_of(out)] == ["a"]  # every line a record, no header
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.jsonl", "o.jsonl.manifest.json"]


def test_a_path_that_is_not_utf8_is_kept_in_the_manifest_and_read_back(tmp_path):
    odd = tmp_path / os.fsdecode(b"in\xff.txt")  # a file name's bytes, surrogate-escaped
    m = RunManifest.new(pipeline="story", fingerprint="f" * 64, model="m", input=odd, options={})
    out = tmp_path / "o.jsonl"
    with open_run(out, m, restart=False):
        pass
    assert json.loads(manifest_path(out).read_bytes())["input"] == str(odd)
    with open_run(out, m, restart=False) as rf:  # the same run resumes
        assert rf.manifest.input == str(odd)


def test_chain_fingerprint_is_canonical_and_sensitive():
    a = chain_fingerprint({"target": "story", "options": {"x": 1, "y": 2}, "prompt": "P"})
    b = chain_fingerprint({"prompt": "P", "options": {"y": 2, "x": 1}, "target": "story"})
    assert a == b and len(a) == 64
    assert a != chain_fingerprint({"target": "story", "options": {"x": 1, "y": 2}, "prompt": "Q"})


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ([], "not a JSON object"),
        ({"format": 2}, "newer"),
        ({"format": 1, "pipeline": "p"}, "'fingerprint' is missing"),
    ],
)
def test_a_manifest_that_does_not_read_is_named(data, why):
    with pytest.raises(ValueError, match=why):
        RunManifest.from_dict(data)


# 2a. the lock


def test_a_second_run_on_the_same_output_fails_at_once_and_kill_9_frees_it(tmp_path):
    out = tmp_path / "o.jsonl"
    holder = child("hold", out)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        began = time.monotonic()
        with pytest.raises(ConfigurationError) as info:
            open_run(out, manifest(tmp_path), restart=False)
        assert time.monotonic() - began < 1.0
        assert str(info.value) == f"{out} is in use by another run (pid {holder.pid})"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    assert lock_path(out).exists()  # left by the killed run; no longer locked
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        assert rf.manifest.sessions == 2
        assert lock_path(out).read_text().strip() == str(os.getpid())
    assert not lock_path(out).exists()  # removed when released


def test_another_process_is_refused_while_we_hold_the_output(tmp_path):
    out = tmp_path / "o.jsonl"
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        assert not os.get_inheritable(rf._lock.fd)  # a spawned model server never keeps it
        answer = subprocess.run(
            [sys.executable, "-c", CHILD, "try", str(out)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
    assert answer == f"ConfigurationError {out} is in use by another run (pid {os.getpid()})"
    with open_run(out, manifest(tmp_path), restart=False):  # released: free again
        pass


@pytest.mark.parametrize("existing", [False, True])
def test_a_hard_link_to_the_output_is_refused_while_a_run_holds_it(tmp_path, existing):
    """Issue 22, point 6: two runs through a hard link wrote 560 lines, 260 duplicates."""
    out = tmp_path / "o.jsonl"
    early = tmp_path / "early.jsonl"  # linked before the run: the file as it was
    if existing:  # a resume that compacts: the records become a new file (a new inode)
        out.write_text(line(rec("a")) + line(rec("b", error=True)))
        write_manifest = open_run(out, manifest(tmp_path), restart=False)
        write_manifest.close()
        out.write_text(line(rec("a")) + line(rec("b", error=True)))
        os.link(out, early)
    holder = child("hold", out)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        late = tmp_path / "late.jsonl"  # linked while it runs: the file it writes
        os.link(out, late)
        for name in [late, early] if existing else [late]:
            before = snapshot(tmp_path)
            with pytest.raises(ConfigurationError) as info:
                open_run(name, manifest(tmp_path), restart=False)
            assert str(info.value) == (
                f"{name} is in use by another run that writes the same file under another "
                "name (a hard link)"
            )
            assert snapshot(tmp_path) == before  # refused before any change
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    with open_run(late, manifest(tmp_path), restart=False):  # free again once it died
        pass


# 2b. not ours: refused, nothing changed


FOREIGN = {
    "csv": b"name,city\nAda,London\n",
    "json-object-without-newline": b'{"name": "Ada"}',
    "pretty-json": b'{\n  "id": "a"\n}\n',
    "object-without-record-keys": b'{"id": "a", "text": "t"}\n',
    "a-record-then-a-blank-line": line(rec("a")).encode() + b"\n" + line(rec("b")).encode(),
    "a-record-then-text": line(rec("a")).encode() + b"notes\n" + line(rec("b")).encode(),
    "id-not-a-string": b'{"id": 3, "output": "o", "error": null}\n',
    "binary": bytes(range(256)) * 4,
}


@pytest.mark.parametrize("restart", [False, True])
@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_a_file_that_is_not_ours_is_refused_and_left_as_it_is(tmp_path, name, restart):
    out = tmp_path / "o.jsonl"
    out.write_bytes(FOREIGN[name])
    before = snapshot(tmp_path)
    with pytest.raises(ConfigurationError, match=r"is not a record \(.*\); not a records file"):
        open_run(out, manifest(tmp_path), restart=restart)
    assert snapshot(tmp_path) == before  # no lock, no manifest, no backup left behind


def test_the_records_of_another_chain_or_model_are_refused_and_left_as_they_are(tmp_path):
    out = tmp_path / "o.jsonl"
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        rf.out.write(line(rec("a")) + line(rec("b", error=True)))
    before = snapshot(tmp_path)
    with pytest.raises(ConfigurationError) as info:
        open_run(out, manifest(tmp_path, fp="e" * 64), restart=False)
    assert str(info.value) == (
        f"{out} holds the records of another run (chain story ffffffffffff there, "
        "story eeeeeeeeeeee here); give another output, or run again with --restart to move them aside"
    )
    with pytest.raises(ConfigurationError, match="model 'model m1' there, 'model m2' here"):
        open_run(out, manifest(tmp_path, model="model m2"), restart=False)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("text", "why"), [(b"{oops", "not JSON"), (b'{"format": 9}', "newer than this version")]
)
def test_a_manifest_that_does_not_read_is_refused(tmp_path, text, why):
    out = tmp_path / "o.jsonl"
    out.write_text(line(rec("a")))
    manifest_path(out).write_bytes(text)
    before = snapshot(tmp_path)
    with pytest.raises(
        ConfigurationError, match=f"not a run manifest .*{why}.*; run again with --restart"
    ):
        open_run(out, manifest(tmp_path), restart=False)
    assert snapshot(tmp_path) == before
    with open_run(out, manifest(tmp_path), restart=True) as rf:  # restart moves it aside
        assert rf.backup is not None
        assert manifest_path(rf.backup).read_bytes() == text


def test_a_partial_last_line_is_not_a_reason_to_refuse(tmp_path):
    out = tmp_path / "o.jsonl"
    for cut in (b"{", b'{"i', b'{"id": "x", "outp'):
        out.write_bytes(line(rec("a")).encode() + cut)
        with open_run(out, manifest(tmp_path), restart=False) as rf:
            assert rf.done_ids == {"a"} and rf.prior.dropped_partial == 1
        assert out.read_text() == line(rec("a"))


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="is not a regular file"):
        open_run(tmp_path, manifest(tmp_path), restart=False)


# 2c. restart moves aside, never deletes


def test_restart_moves_the_old_run_aside_under_unique_names(tmp_path, monkeypatch):
    import lc_async_pipelines.runner.records.run_file as records

    monkeypatch.setattr(records.time, "strftime", lambda fmt: "20250102-030405")
    out = tmp_path / "o.jsonl"
    backups = []
    for i in range(3):  # the same second: the stamps collide, the names do not
        with open_run(out, manifest(tmp_path, fp=f"{i}" * 64), restart=True) as rf:
            rf.out.write(line(rec(f"r{i}")))
            backups.append(rf.backup)
            assert rf.done_ids == frozenset() and rf.manifest.sessions == 1
        (tmp_path / "o.jsonl.summary.json").write_text(f'{{"run": {i}}}\n')
    assert backups[0] is None
    first, second = backups[1], backups[2]
    assert first is not None and second is not None and first != second
    assert (first.name, second.name) == (
        "o.jsonl.bak-20250102-030405",
        "o.jsonl.bak-20250102-030405-2",
    )
    assert [r["id"] for r in lines_of(first)] == ["r0"]
    assert [r["id"] for r in lines_of(second)] == ["r1"]
    assert json.loads(manifest_path(first).read_text())["fingerprint"] == "0" * 64
    assert json.loads((tmp_path / (first.name + ".summary.json")).read_text()) == {"run": 0}
    assert [r["id"] for r in lines_of(out)] == ["r2"]


# 2d/2e. resume


def test_resume_keeps_each_done_record_once_and_counts_what_it_drops(tmp_path):
    out = tmp_path / "o.jsonl"
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        created = rf.manifest.created_at
    body = [rec("a"), rec("b", error=True), rec("a", tokens=99), rec("c", tokens=5), rec("b")]
    out.write_text("".join(map(line, body)) + '{"id": "d", "out')
    m = RunManifest.new(
        pipeline="story", fingerprint="f" * 64, model="model m1", input=tmp_path / "other.txt"
    )
    with open_run(out, m, restart=False) as rf:
        assert rf.done_ids == {"a", "b", "c"}
        prior = rf.prior
        assert (prior.done, prior.dropped_failed, prior.dropped_duplicates) == (3, 1, 1)
        assert (prior.dropped_partial, prior.dropped, prior.sessions) == (1, 3, 1)
        assert (prior.input_tokens, prior.total_tokens) == (25, 75)
        assert rf.manifest.sessions == 2 and rf.manifest.created_at == created
        assert rf.previous is not None and rf.previous.input == str(tmp_path / "in.txt")
        assert rf.manifest.input == str(tmp_path / "other.txt")  # the input may move or grow
        rf.out.write(line(rec("d")))
    assert [(r["id"], r["usage"]["input_tokens"]) for r in lines_of(out)] == [
        ("a", 10),
        ("c", 5),
        ("b", 10),
        ("d", 10),
    ]
    assert not (tmp_path / "o.jsonl.tmp").exists()


def test_a_clean_file_is_not_rewritten_and_a_whole_unterminated_record_is_kept(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_text(line(rec("a")))
    inode = out.stat().st_ino
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        assert rf.adopted and rf.previous is None  # records from before manifests
        assert rf.manifest.sessions == 2 and rf.prior.dropped == 0
    assert out.stat().st_ino == inode
    out.write_text(line(rec("a")) + line(rec("b")).rstrip("\n"))
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        assert rf.done_ids == {"a", "b"} and rf.prior.dropped == 0
        rf.out.write(line(rec("c")))
    assert [r["id"] for r in lines_of(out)] == ["a", "b", "c"]


def test_a_manifest_beside_no_records_is_replaced(tmp_path):
    out = tmp_path / "o.jsonl"
    manifest_path(out).write_text(json.dumps(manifest(tmp_path, fp="e" * 64).to_dict()))
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        assert rf.previous is None and rf.manifest.sessions == 1
    assert json.loads(manifest_path(out).read_text())["fingerprint"] == "f" * 64


# kill -9 between steps


def test_kill_9_while_writing_loses_no_done_record(tmp_path):
    out = tmp_path / "o.jsonl"
    proc = child("write-then-die", out)
    assert proc.wait(60) == -signal.SIGKILL
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        assert rf.done_ids == {"k0", "k1", "k2"} and rf.prior.dropped_partial == 1
        assert rf.manifest.sessions == 2
    assert [r["id"] for r in lines_of(out)] == ["k0", "k1", "k2"]


def test_kill_9_before_the_rewrite_replaces_the_file_leaves_it_whole(tmp_path):
    out = tmp_path / "o.jsonl"
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        rf.out.write(line(rec("a")) + line(rec("b", error=True)) + line(rec("c")))
    before = out.read_bytes()
    proc = child("die-at-replace", out)
    assert proc.wait(60) == -signal.SIGKILL
    assert out.read_bytes() == before  # untouched: the rewrite was only staged
    assert (tmp_path / "o.jsonl.tmp").exists()
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        assert rf.done_ids == {"a", "c"} and rf.prior.dropped_failed == 1
    assert [r["id"] for r in lines_of(out)] == ["a", "c"]
    assert not (tmp_path / "o.jsonl.tmp").exists()
    assert prepare_resume(out) == {"a", "c"}


def test_kill_9_in_the_middle_of_a_restart_keeps_the_records_in_the_backup(tmp_path):
    out = tmp_path / "o.jsonl"
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        rf.out.write(line(rec("a")) + line(rec("b")))
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        rf.finish(summary_of([]))
    records = out.read_bytes()
    proc = child("die-at-second-rename", out)
    assert proc.wait(60) == -signal.SIGKILL
    (backup,) = tmp_path.glob("o.jsonl.bak-*[0-9]")
    assert backup.read_bytes() == records and not out.exists()
    with open_run(out, manifest(tmp_path), restart=False) as rf:  # starts afresh
        assert rf.done_ids == frozenset() and rf.manifest.sessions == 1
    assert backup.read_bytes() == records


def test_a_leftover_manifest_tmp_is_ignored_and_removed(tmp_path):
    out = tmp_path / "o.jsonl"
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        rf.out.write(line(rec("a")))
    staged = tmp_path / "o.jsonl.manifest.json.tmp"
    staged.write_text('{"format": 1, "pipe')  # a kill while staging the manifest
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        assert rf.done_ids == {"a"} and rf.manifest.sessions == 2
    assert not staged.exists()


# 3. the summary covers the whole run


def summary_of(records: list[dict], wall_s: float = 2.0):
    from lc_async_pipelines.runner import RunSummary

    summary = RunSummary(wall_s=wall_s)
    for r in records:
        summary.add(Record(**{k: v for k, v in r.items() if k in Record.__dataclass_fields__}))
    return summary


async def records_of(*records: dict):
    for r in records:
        yield Record(**{k: v for k, v in r.items() if k in Record.__dataclass_fields__})


async def test_the_summary_after_a_resume_covers_every_session(tmp_path):
    out = tmp_path / "o.jsonl"
    first = [rec("a", retries=1), rec("b"), rec("c", error=True, retries=2)]
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        session = await write_records(records_of(*first), rf.out)
        one = rf.finish(session, {"requests_sent": 4, "cache_hits": 0})
    assert (one["done"], one["failed"], one["sessions"]) == (2, 1, 1)
    for key in ("done", "failed", "retries", "total_tokens", "attempt_errors", "failed_by_class"):
        assert one[key] == session.as_dict()[key]  # a first session: as before
    assert one["total_wall_s"] == one["session_wall_s"] == round(session.wall_s, 3)
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        assert rf.done_ids == {"a", "b"} and rf.prior.wall_s == session.wall_s
        again = await write_records(records_of(rec("c", tokens=7)), rf.out)
        two = rf.finish(again, {"requests_sent": 1, "cache_hits": 0})
    written = json.loads((tmp_path / "o.jsonl.summary.json").read_text())
    assert written == two
    assert (two["done"], two["failed"], two["sessions"]) == (3, 0, 2)
    assert two["total_tokens"] == 30 + 30 + 21 and two["input_tokens"] == 27
    assert two["retries"] == 1 and two["failed_by_class"] == {}
    assert two["session"]["done"] == 1 and two["session"]["total_tokens"] == 21
    assert two["session"]["dropped_failed"] == 1 and two["session"]["resumed_done"] == 2
    assert two["requests_sent"] == 1  # this session's figures keep their place
    assert two["session_wall_s"] == round(again.wall_s, 3)
    assert two["total_wall_s"] == round(session.wall_s + again.wall_s, 3)
    # wall time and rates cover the same sessions as done: all of them
    assert (
        two["wall_s"] == two["total_wall_s"] and two["session"]["wall_s"] == two["session_wall_s"]
    )
    assert two["items_per_s"] == round(3 / (session.wall_s + again.wall_s), 3)
    kept = json.loads(manifest_path(out).read_text())
    assert kept["sessions"] == 2 and kept["wall_s"] == pytest.approx(session.wall_s + again.wall_s)


def test_whole_run_totals_stream_the_file_and_skip_a_partial_line(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_text(line(rec("a")) + line(rec("b", error=True, retries=1)) + '{"id": "c", ')
    totals = run_totals(out)
    assert (totals.done, totals.failed, totals.unreadable, totals.total_tokens) == (1, 1, 1, 60)
    assert totals.attempt_errors == {"APIError 500": 1} and totals.failed_by_class == {"Boom": 1}
    assert run_totals(tmp_path / "missing.jsonl").done == 0
    merged = whole_run_summary(
        out, summary_of([rec("b", error=True)], wall_s=3.0), sessions=4, previous_wall_s=10.0
    )
    assert (merged["done"], merged["sessions"], merged["total_wall_s"]) == (1, 4, 13.0)


def test_an_unpriced_run_has_no_cost_rather_than_zero(tmp_path):
    out = tmp_path / "o.jsonl"
    unpriced = {**rec("a"), "calls": 1, "cost_usd": None}
    out.write_text(line(unpriced) + line({**rec("b"), "calls": 0}))  # b: no call (a cache hit)
    assert run_totals(out).as_dict()["cost_usd"] is None
    assert run_totals(out).as_dict()["unpriced"] == 1
    out.write_text(line(unpriced) + line({**rec("c"), "calls": 1, "cost_usd": 0.25}))
    assert run_totals(out).as_dict()["cost_usd"] == 0.25  # priced in part: the priced sum
    assert run_totals(out).as_dict()["unpriced"] == 1


# 4. prepare_resume, for existing callers


def test_prepare_resume_still_compacts_and_now_refuses_a_foreign_file(tmp_path):
    out = tmp_path / "o.jsonl"
    assert prepare_resume(out) == set()
    out.write_text(line(rec("a")) + line(rec("b", error=True)) + '{"id": "p')
    assert prepare_resume(out) == {"a"}
    assert out.read_text() == line(rec("a"))
    out.write_text(line(rec("a")) + "a note\n")
    with pytest.raises(ConfigurationError, match="line 2 is not a record"):
        prepare_resume(out)
    assert out.read_text() == line(rec("a")) + "a note\n"


def test_a_symlink_to_the_output_finds_the_same_lock(tmp_path):
    from lc_async_pipelines.errors import ConfigurationError
    from lc_async_pipelines.runner.records import RunManifest, open_run

    out = tmp_path / "out.jsonl"
    link = tmp_path / "link.jsonl"
    manifest = RunManifest.new(
        pipeline="story", fingerprint="f", model="m", input=tmp_path / "i.txt"
    )
    with open_run(out, manifest, restart=False):
        link.symlink_to(out)
        with pytest.raises(ConfigurationError, match="in use by another run"):
            open_run(link, manifest, restart=False)
    assert link.is_symlink()


def test_manifest_describes_items_limits_and_session_start_for_readers(tmp_path):
    from lc_async_pipelines.runner.records import RunManifest

    made = RunManifest.new(
        pipeline="story",
        fingerprint="f" * 64,
        model="m",
        input=tmp_path / "in.txt",
        items=12,
        limits={"rpm": 60, "tpm": None, "max_in_flight": 4},
    )
    assert made.limits == {"rpm": 60, "max_in_flight": 4}
    assert made.session_started_at == made.created_at
    back = RunManifest.from_dict(made.to_dict())
    assert back == made
    mistyped = {**made.to_dict(), "items": "12", "limits": {"rpm": "fast", "tpm": 100}}
    read = RunManifest.from_dict(mistyped)  # for reading only: dropped, not refused
    assert read.items is None and read.limits == {"tpm": 100.0}
    old = {k: v for k, v in made.to_dict().items() if k not in ("items", "limits")}
    assert RunManifest.from_dict(old).items is None


def test_a_full_disk_at_the_summary_is_an_output_write_error_and_the_records_stay(
    tmp_path, monkeypatch
):
    """Issue 22, point 9: the end of a run on a full disk is OutputWriteError, not an OSError."""
    import errno

    from lc_async_pipelines.errors import OutputWriteError
    from lc_async_pipelines.runner import RunSummary
    from lc_async_pipelines.runner.records import files

    out = tmp_path / "o.jsonl"
    with open_run(out, manifest(tmp_path), restart=False) as rf:
        rf.out.write(line(rec("a")))
        real = files.os.fsync

        def full(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(files.os, "fsync", full)
        with pytest.raises(OutputWriteError) as info:
            rf.finish(RunSummary())
        monkeypatch.setattr(files.os, "fsync", real)
    assert info.value.cause == "No space left on device"
    assert str(info.value).endswith(": cannot be written (No space left on device)")
    assert [r["id"] for r in lines_of(out)] == ["a"]
    with open_run(out, manifest(tmp_path), restart=False) as rf:  # resumes as it was
        assert rf.done_ids == {"a"}
