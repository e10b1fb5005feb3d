"""Moving a store's contents between machines: export as Parquet, import (merge) idempotently.

`pipeline store export DIR` writes one Parquet file per table plus `manifest.json`;
`pipeline store import DIR...` merges any number of such folders (shards of one batch,
nightly runs of several hosts) into this store. Every table has a natural key, and a row
whose key is already present is left alone, so importing the same folder twice adds
nothing; ledger rows (runs, run items) are state, so the newer row (by its timestamp) wins.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, StoreError
from pipeline.store import migrations
from pipeline.store.connection import Connection, scalar
from pipeline.store.generations import Generations
from pipeline.text import utc_now

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

FORMAT = "comparison-store-export/2"  # /2: every table of the registry; /1 lacked the Batch API tables
FORMATS = ("comparison-store-export/1", FORMAT)


@dataclass(frozen=True)
class Exported:
    folder: Path
    rows: dict[str, int]
    bytes: int


def export(store: Connection, folder: Path) -> Exported:
    """Every table as `<table>.parquet` and a manifest, written to a temporary folder and renamed."""
    if folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"{folder} exists and is not empty; export into a new folder")
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rows: dict[str, int] = {}
    try:
        with store.session() as con:
            for table, spec in migrations.tables().items():
                path = tmp / f"{table}.parquet"
                order = ", ".join(spec.key)
                con.execute(f"COPY (SELECT * FROM {table} ORDER BY {order}) TO '{_sql_path(path)}' (FORMAT parquet)")
                rows[table] = int(scalar(con, f"SELECT count(*) FROM {table}"))
        manifest = {
            "format": FORMAT,
            "exported_at": utc_now(),
            "store": str(store.path.name),
            "migrations": migrations.names(),
            "rows": rows,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if folder.exists():
            folder.rmdir()
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in folder.iterdir())
    return Exported(folder, rows, size)


@dataclass(frozen=True)
class Imported:
    folders: int
    added: dict[str, int]
    seconds: float


def import_(store: Generations, folders: list[Path]) -> Imported:
    """Merge export folders into the store, all in one transaction (all of them or nothing)."""
    known = set(migrations.names())
    contents: dict[Path, list[str]] = {}  # folder -> the tables it carries
    for folder in folders:
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            raise ConfigError(
                f"{folder} is not a store export (no manifest.json); make one with `pipeline store export`"
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"{manifest_path} is not valid JSON ({exc}); export the store again") from None
        if manifest.get("format") not in FORMATS:
            raise ConfigError(f"{folder}: unknown export format {manifest.get('format')!r}; expected {FORMAT}")
        newer = [m for m in manifest.get("migrations", []) if m not in known]
        if newer:
            raise ConfigError(
                f"{folder} was exported by a newer pipeline (store migrations {', '.join(newer)}); upgrade this one"
            )
        carried = list(migrations.created_by(list(manifest.get("migrations", []))))
        if manifest["format"] != FORMAT:  # an export of an older release: it did not carry the Batch API tables
            carried = [t for t in carried if not t.startswith("api_")]
        contents[folder] = carried
        missing = [t for t in carried if not (folder / f"{t}.parquet").is_file()]
        if missing:
            raise ConfigError(f"{folder} lacks {', '.join(t + '.parquet' for t in missing)}; export the store again")
    known_schemas = store.schemas()
    for folder in folders:
        _check_generations(folder, known_schemas)
    started = time.monotonic()
    tables = migrations.tables()
    added = dict.fromkeys(tables, 0)
    try:
        with store.session() as con:
            for folder in folders:
                for table in contents[folder]:
                    added[table] += _merge(con, table, tables[table], folder / f"{table}.parquet")
    except StoreError as exc:
        raise StoreError(f"{exc}; nothing was imported") from None
    return Imported(len(folders), added, time.monotonic() - started)


def _check_generations(folder: Path, known_schemas: dict[str, str]) -> None:
    """Every exported generation is a comparison its own schema accepts: an export is data from elsewhere."""
    import duckdb
    from jsonschema import Draft202012Validator

    con = duckdb.connect()
    try:
        schemas = dict(known_schemas)
        exported = con.execute(f"SELECT sha256, body FROM read_parquet('{_sql_path(folder / 'schemas.parquet')}')")
        schemas.update(dict(exported.fetchall()))
        rows = con.execute(
            f"SELECT id, pair_key, schema_sha256, data, params, sources "
            f"FROM read_parquet('{_sql_path(folder / 'generations.parquet')}')"
        ).fetchall()
    except duckdb.Error as exc:
        raise ConfigError(
            f"{folder}: the export cannot be read ({str(exc).splitlines()[0]}); nothing was imported"
        ) from None
    finally:
        con.close()
    validators: dict[str, Any] = {}
    for gid, pair_key, schema_sha, data, params, sources in rows:
        where = f"{folder}: generation {gid} ({pair_key})"
        try:
            value = json.loads(data)
            if not isinstance(json.loads(params), dict) or not isinstance(json.loads(sources), list):
                raise ValueError("its params or sources are not what a generation stores")
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where} is not a stored comparison ({exc}); nothing was imported") from None
        if schema_sha not in schemas:
            raise ConfigError(f"{where} was made with a schema ({schema_sha[:12]}) the export does not carry; "
                              "nothing was imported")  # fmt: skip
        if schema_sha not in validators:
            validators[schema_sha] = Draft202012Validator(json.loads(schemas[schema_sha]))
        error = next(iter(validators[schema_sha].iter_errors(value)), None)
        if error is not None:
            raise ConfigError(f"{where} does not validate against its schema ({error.message[:120]}); "
                              "nothing was imported")  # fmt: skip


def _merge(con: DuckDBPyConnection, table: str, spec: migrations.Table, path: Path) -> int:
    """Insert the file's rows whose key is new; for `newer` tables, replace rows the file has newer."""
    source = f"read_parquet('{_sql_path(path)}')"
    key = spec.key
    match = " AND ".join(f"t.{k} IS NOT DISTINCT FROM s.{k}" for k in key)
    before = int(scalar(con, f"SELECT count(*) FROM {table}"))
    if spec.newer:
        column = spec.newer
        con.execute(
            f"DELETE FROM {table} t USING {source} s WHERE {match} "
            f"AND coalesce(s.{column}, '') > coalesce(t.{column}, '')"
        )
    con.execute(
        f"INSERT INTO {table} BY NAME SELECT DISTINCT ON ({', '.join(key)}) * FROM {source} s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {match})"
    )
    return int(scalar(con, f"SELECT count(*) FROM {table}")) - before


def _sql_path(path: Path) -> str:
    """A path inside a SQL string literal (paths come from the command line, never from model output)."""
    return str(path.resolve()).replace("'", "''")
