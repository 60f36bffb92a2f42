"""Databases registered with the service by name, so tasks refer to them by id.

`NAME=PATH` where PATH is a `.sqlite` file (no variants) or a directory of `.sqlite`
files (the base is `base.sqlite` if present, else the first by name; the others are
variants, in name order). Files are mounted read-only into every sandbox under
`/db/NAME/`; their checksums are taken at registration and verified after each batch.

`NAME=PATH` with `.duckdb` files (a file, or a directory: `base.duckdb` + variants)
registers DuckDB databases the same way; the service's own `duckdb` package is then
mounted read-only into the sandboxes too (the runner forks a child per DuckDB job to
load it, so Python jobs never pay for it).

`NAME=postgresql://ROLE@HOST:PORT/DB?schemas=base,variant1,...` registers a PostgreSQL
database: each schema is one variant (the first is the base; default `public`). ROLE
should be a login role with SELECT only: queries also run in read-only transactions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

MOUNT = "/db"
PACKAGES = "/opt/rft-packages"  # the runner looks here for engine packages (sqlrun.PACKAGES)
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


class RegistryError(ValueError):
    pass


def _checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Database:
    name: str
    engine: str  # sqlite | postgres
    files: tuple[Path, ...]  # sqlite: host paths, base first, then variants
    checksums: tuple[str, ...] = field(default=(), compare=False)
    dsn: str = field(default="", repr=False)  # postgres: connection string (may hold a password)
    schemas: tuple[str, ...] = ()  # postgres: base schema first, then variants

    def sandbox_paths(self) -> list[str]:
        return [f"{MOUNT}/{self.name}/{path.name}" for path in self.files]

    def changed_files(self) -> list[str]:
        """Files (or PostgreSQL schemas) whose content differs from registration: critical if any."""
        if self.engine == "postgres":
            now = _pg_checksums(self.dsn, self.schemas)
            return [
                f"{self.name}:{s}" for s, old, new in zip(self.schemas, self.checksums, now, strict=True) if old != new
            ]
        return [str(p) for p, digest in zip(self.files, self.checksums, strict=True) if _checksum(p) != digest]


def _pg_checksums(dsn: str, schemas: tuple[str, ...]) -> tuple[str, ...]:
    """One digest per schema over every row of every table (order-independent)."""
    import psycopg
    from psycopg import sql

    digests = []
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        for schema in schemas:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", (schema,)
                )
            ]
            digest = hashlib.sha256()
            for table in tables:
                query = sql.SQL(
                    "SELECT coalesce(string_agg(h, '' ORDER BY h), '') FROM "
                    "(SELECT md5(t::text) AS h FROM {}.{} AS t) AS rows"
                ).format(sql.Identifier(schema), sql.Identifier(table))
                digest.update(table.encode() + b"\0" + str(conn.execute(query).fetchone()[0]).encode())
            digests.append(digest.hexdigest())
    return tuple(digests)


_SUFFIXES = {".sqlite": "sqlite", ".db": "sqlite", ".sqlite3": "sqlite", ".duckdb": "duckdb"}


def _database_files(path: Path) -> tuple[Path, ...]:
    if path.is_file():
        return (path,)
    files = sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES and p.is_file())
    if not files:
        raise RegistryError(f"{path}: no .sqlite or .duckdb files")
    base = [p for p in files if p.stem == "base"]
    return tuple(base + [p for p in files if p not in base])


@dataclass
class Registry:
    databases: dict[str, Database] = field(default_factory=dict)

    def register(self, name: str, location: str) -> Database:
        if not name or not set(name) <= _NAME_CHARS:
            raise RegistryError(f"database name {name!r}: use letters, digits, '_', '-', '.'")
        if name in self.databases:
            raise RegistryError(f"database {name!r} is registered twice")
        if location.startswith(("postgresql://", "postgres://")):
            return self._register_postgres(name, location)
        path = Path(location).expanduser().resolve()
        if not path.exists():
            raise RegistryError(f"database {name!r}: {location} does not exist")
        files = _database_files(path)
        if len({p.name for p in files}) != len(files):
            raise RegistryError(f"database {name!r}: file names must differ")
        engines = {_SUFFIXES.get(p.suffix, "sqlite") for p in files}
        if len(engines) != 1:
            raise RegistryError(f"database {name!r}: mixes SQLite and DuckDB files")
        database = Database(name, engines.pop(), files, tuple(_checksum(p) for p in files))
        self.databases[name] = database
        return database

    def _register_postgres(self, name: str, dsn: str) -> Database:
        base, _, query = dsn.partition("?")
        params = [p for p in query.split("&") if p]
        schemas = next((p.split("=", 1)[1] for p in params if p.startswith("schemas=")), "public")
        rest = "&".join(p for p in params if not p.startswith("schemas="))
        names = tuple(s for s in schemas.split(",") if s)
        if not names:
            raise RegistryError(f"database {name!r}: schemas= lists no schema")
        dsn = base + (f"?{rest}" if rest else "")
        try:
            checksums = _pg_checksums(dsn, names)
        except Exception as exc:  # noqa: BLE001 - any failure: the DSN cannot be used
            raise RegistryError(f"database {name!r}: cannot read it: {str(exc).strip()[:200]}") from None
        database = Database(name, "postgres", (), checksums, dsn, names)
        self.databases[name] = database
        return database

    @classmethod
    def from_specs(cls, specs: list[str]) -> Registry:
        registry = cls()
        for spec in specs:
            name, sep, location = spec.partition("=")
            if not sep:
                raise RegistryError(f"--database {spec!r}: expected NAME=PATH")
            registry.register(name.strip(), location.strip())
        return registry

    def mounts(self) -> list[tuple[str, str]]:
        """(host path, sandbox path) pairs to bind read-only: database files alone, never their
        directories; and the duckdb package when a DuckDB database is registered."""
        binds = [
            (str(path), inside)
            for db in self.databases.values()
            if db.engine in ("sqlite", "duckdb")
            for path, inside in zip(db.files, db.sandbox_paths(), strict=True)
        ]
        if any(db.engine == "duckdb" for db in self.databases.values()):
            binds += _duckdb_package()
        return binds


def _duckdb_package() -> list[tuple[str, str]]:
    import importlib.util

    spec = importlib.util.find_spec("duckdb")
    native = importlib.util.find_spec("_duckdb")
    if spec is None or spec.origin is None or native is None or native.origin is None:
        raise RegistryError("a DuckDB database needs the duckdb package installed (pip install duckdb)")
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        metadata = Path(distribution("duckdb")._path)  # type: ignore[attr-defined]  # it reads its own version
    except (PackageNotFoundError, AttributeError) as exc:
        raise RegistryError(f"the duckdb package has no metadata: {exc}") from None
    paths = [Path(spec.origin).parent, Path(native.origin), metadata]
    return [(str(path), f"{PACKAGES}/{path.name}") for path in paths]
