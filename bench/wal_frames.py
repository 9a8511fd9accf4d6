#!/usr/bin/env python3
"""How many WAL pages one state-machine commit writes to catalog.db, by what.

Replays the SQL the state machine runs for an entry of new listings (one row per listing in
listings, listing_history and audit, one search-index insert per entry, the position) against
the node's own schema files, with Python's sqlite3, on a catalog of 100,000 listings; then
measures the WAL growth of 200 more commits. Variants switch parts off to see their share:

    python3 bench/wal_frames.py                 # as the node does it
    python3 bench/wal_frames.py --no-id-index   # without the unique index on the hash id
    python3 bench/wal_frames.py --no-search     # without the search index
    python3 bench/wal_frames.py --page-size 1024
    python3 bench/wal_frames.py --automerge 4   # FTS5's default (schema v4 sets 16)

A model, not the node: Python's SQLite build and per-statement overhead differ from the
node's, so the times are only comparable between variants; the page counts are SQLite's own.

Historical: it models the state machine up to catalog schema v21 (the FTS5 index inside the
apply, the columns v22 and v23 dropped) and no longer runs against the schema files since v22;
its figures in bench/RESULTS.md are of that time.
"""

import argparse
import hashlib
import os
import pathlib
import re
import sqlite3
import tempfile
import time

SCHEMA_DIR = pathlib.Path(__file__).resolve().parent.parent / "node" / "src" / "store"


def schema(no_id_index: bool) -> str:
    steps = sorted(SCHEMA_DIR.glob("catalog_schema_v*.sql"), key=lambda p: int(re.findall(r"\d+", p.name)[0]))
    text = "".join(p.read_text() for p in steps)
    if no_id_index:
        text = text.replace("id             TEXT    NOT NULL UNIQUE", "id             TEXT    NOT NULL")
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32, help="listings per commit (default 32)")
    ap.add_argument("--existing", type=int, default=100_000, help="listings before measuring")
    ap.add_argument("--no-id-index", action="store_true")
    ap.add_argument("--no-search", action="store_true")
    ap.add_argument("--page-size", type=int, default=4096)
    ap.add_argument("--automerge", type=int, help="FTS5 automerge (schema v4 sets 16)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "catalog.db")
        db = sqlite3.connect(path, isolation_level=None)
        db.execute(f"PRAGMA page_size = {args.page_size}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = OFF")  # page counts do not depend on it
        db.execute("PRAGMA wal_autocheckpoint = 0")
        db.executescript(schema(args.no_id_index))
        if args.automerge is not None:
            db.execute("INSERT INTO listings_fts (listings_fts, rank) VALUES ('automerge', ?)", (args.automerge,))
        insert = (
            "INSERT INTO listings (id, version, content_id, state, origin, submitted_by, provider_id, "
            "provider_name, category, classification, delivery_modes, title, description, keywords, "
            "scenarios, created_at, updated_at, body) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
        )
        if not args.no_id_index:
            insert += " ON CONFLICT (id) DO NOTHING"
        body = os.urandom(514)  # the mean canonical body of the bench's listings
        n = 0

        def commit(entry: int) -> None:
            nonlocal n
            db.execute("BEGIN IMMEDIATE")
            first = n + 1
            for _ in range(args.batch):
                n += 1
                lid = "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()
                db.execute(insert, (lid, 1, lid, "submitted", "xuchang/municipal", "provider:x",
                                    "yuzhou-credit-center", "禹州市信用中心", "credit", "general",
                                    ",verification,api,", f"禹州市企业信用核验接口 {n}",
                                    "按统一社会信用代码核验企业登记与信用状态", "", "企业贷款授信审查",
                                    n, n, body))
                db.execute("INSERT INTO listing_history (listing_seq, listing_id, seq, raft_index, at, "
                           "actor, role, action, from_state, to_state, version, detail) "
                           "VALUES (?, ?, 1, ?, ?, 'provider:x', 'provider', 'submit', NULL, "
                           "'submitted', 1, NULL)", (n, lid, entry, n))
                db.execute("INSERT INTO audit (seq, raft_index, at, actor, role, action, object_id, "
                           "result, prev_hash, hash) VALUES (?, ?, ?, 'provider:x', 'provider', "
                           "'submit_listing', ?, 'ok', ?, ?)",
                           (n, entry, n, lid, os.urandom(32), os.urandom(32)))
            if not args.no_search:
                db.execute("INSERT INTO listings_fts (rowid, title, description, keywords, scenarios, "
                           "provider_name) SELECT seq, title, description, keywords, scenarios, "
                           "provider_name FROM listings WHERE seq BETWEEN ? AND ?", (first, n))
            db.execute("INSERT INTO sm_meta (key, value) VALUES ('last_applied', ?) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (os.urandom(40),))
            db.execute("COMMIT")

        for entry in range(args.existing // args.batch):
            commit(entry)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        commits = 200
        started = time.perf_counter()
        for entry in range(commits):
            commit(entry)
        elapsed = time.perf_counter() - started
        wal = os.path.getsize(path + "-wal")
        frames = wal / (args.page_size + 24)
        print(f"{frames / commits:.1f} WAL pages per commit of {args.batch} listings, "
              f"{wal / commits / args.batch / 1024:.1f} KiB of WAL per listing, "
              f"{1000 * elapsed / commits:.2f} ms per commit (Python)")
        db.close()


if __name__ == "__main__":
    main()
