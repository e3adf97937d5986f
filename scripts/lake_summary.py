"""Print a short summary of the domain layer of a lake database (used by `make demo`)."""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy import text

from core_service.store import Database

QUERIES = {
    "repositories": "SELECT count(*) FROM repos",
    "commits": "SELECT count(*) FROM commits",
    "authors": "SELECT count(DISTINCT author_email) FROM commits",
    "files changed": "SELECT count(DISTINCT file_path) FROM commit_files",
    "lines added": "SELECT coalesce(sum(additions), 0) FROM commits",
    "lines deleted": "SELECT coalesce(sum(deletions), 0) FROM commits",
    "refs": "SELECT count(*) FROM refs",
}


async def main(url: str) -> None:
    async with Database(url) as db, db.connect() as conn:
        for label, sql in QUERIES.items():
            value = (await conn.execute(text(sql))).scalar()
            print(f"  {label:<14} {value}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "devstream.db"))
