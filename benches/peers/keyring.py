"""The legacy panel's way, as a peer for `cargo bench --bench keyring`:
Fernet (Python `cryptography`) encrypt+decrypt, and a rotation of N tokens stored in
SQLite with MultiFernet.rotate in batches of one transaction each.

    keyring.py ops N           -> seconds for N encrypt+decrypt pairs
    keyring.py rotate N BATCH  -> seconds to rotate N stored tokens (set-up not timed)
"""
import os
import sqlite3
import sys
import tempfile
import time

from cryptography.fernet import Fernet, MultiFernet


def ops(n):
    f = Fernet(Fernet.generate_key())
    value = b"correct horse battery staple"
    start = time.perf_counter()
    for _ in range(n):
        assert f.decrypt(f.encrypt(value)) == value
    return time.perf_counter() - start


def rotate(n, batch):
    old, new = Fernet(Fernet.generate_key()), Fernet(Fernet.generate_key())
    with tempfile.TemporaryDirectory() as d:
        db = sqlite3.connect(os.path.join(d, "legacy.db"))
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE secrets (record TEXT PRIMARY KEY, token TEXT NOT NULL, rotated INTEGER NOT NULL DEFAULT 0)")
        db.executemany(
            "INSERT INTO secrets (record, token) VALUES (?, ?)",
            ((f"server/s{i:05}/password", old.encrypt(f"value-{i}".encode()).decode()) for i in range(n)),
        )
        db.commit()
        multi = MultiFernet([new, old])
        start = time.perf_counter()
        while True:
            rows = db.execute("SELECT record, token FROM secrets WHERE rotated = 0 ORDER BY record LIMIT ?", (batch,)).fetchall()
            if not rows:
                break
            updates = []
            for record, token in rows:
                fresh = multi.rotate(token.encode())
                new.decrypt(fresh)  # verify before commit, as rpcc does
                updates.append((fresh.decode(), record, token))
            db.executemany("UPDATE secrets SET token = ?, rotated = 1 WHERE record = ? AND token = ?", updates)
            db.commit()
        return time.perf_counter() - start


if __name__ == "__main__":
    if sys.argv[1] == "ops":
        print(f"{ops(int(sys.argv[2])):.6f}")
    else:
        print(f"{rotate(int(sys.argv[2]), int(sys.argv[3])):.6f}")
