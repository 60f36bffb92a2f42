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

A SQLite or DuckDB database registered without variants gets automatic ones
(`sandbox.sql.variants`), built here and mounted like registered ones; options after the
path tune them: `NAME=PATH?variants=auto&count=8&seed=0&keep=4&max_mb=128&budget_s=120`,
or `?variants=none` for none. PostgreSQL databases get none (the service never writes to
a user's server): their variants are the schemas registered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.backends.policy import Mount
from sandbox.sql.variants import OPTIONS, VariantSettings, build_variants, default_cache_dir, parse_settings

MOUNT = "/db"
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
    auto: int = 0  # the last `auto` files are automatic variants (none registered)
    keep: int = 0  # automatic variants a task keeps at most (those where its gold's answer changes)

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


def _options(query: str, where: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for part in (p for p in query.split("&") if p):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise RegistryError(f"{where}: option {part!r}: expected KEY=VALUE")
        if key in options:
            raise RegistryError(f"{where}: option {key!r} given twice")
        options[key] = value
    return options


@dataclass
class Registry:
    databases: dict[str, Database] = field(default_factory=dict)
    cache_dir: Path | None = None  # automatic variants (default: sandbox.sql.variants.default_cache_dir)

    def register(self, name: str, location: str) -> Database:
        if not name or not set(name) <= _NAME_CHARS:
            raise RegistryError(f"database name {name!r}: use letters, digits, '_', '-', '.'")
        if name in self.databases:
            raise RegistryError(f"database {name!r} is registered twice")
        if location.startswith(("postgresql://", "postgres://")):
            return self._register_postgres(name, location)
        where = f"database {name!r}"
        location, _, query = location.partition("?")  # a path with '?' in it cannot be registered
        options = _options(query, where)
        try:
            settings = parse_settings(options, where)
        except ValueError as exc:
            raise RegistryError(str(exc)) from None
        path = Path(location).expanduser().resolve()
        if not path.exists():
            raise RegistryError(f"{where}: {location} does not exist")
        files = _database_files(path)
        if len({p.name for p in files}) != len(files):
            raise RegistryError(f"{where}: file names must differ")
        engines = {_SUFFIXES.get(p.suffix, "sqlite") for p in files}
        if len(engines) != 1:
            raise RegistryError(f"{where}: mixes SQLite and DuckDB files")
        engine = engines.pop()
        if len(files) > 1 and options and options != {"variants": "none"}:
            raise RegistryError(
                f"{where}: has {len(files) - 1} registered variant(s); automatic variants ({', '.join(options)}) "
                "are for a database without"
            )
        checksums = tuple(_checksum(p) for p in files)
        database = Database(name, engine, files, checksums)
        if len(files) == 1 and settings.mode == "auto":
            database = self._with_variants(database, settings)
        self.databases[name] = database
        return database

    def _with_variants(self, database: Database, settings: VariantSettings) -> Database:
        cache = self.cache_dir or default_cache_dir()
        base, checksum = database.files[0], database.checksums[0]
        built = build_variants(database.name, base, database.engine, checksum, settings, cache)
        if not built.files:
            return database
        return Database(
            database.name,
            database.engine,
            (base, *built.files),
            (checksum, *built.checksums),
            auto=len(built.files),
            keep=settings.keep,
        )

    def _register_postgres(self, name: str, dsn: str) -> Database:
        base, _, query = dsn.partition("?")
        params = [p for p in query.split("&") if p]
        builder = sorted({p.partition("=")[0] for p in params} & set(OPTIONS))
        if builder and params != ["variants=none"]:
            raise RegistryError(
                f"database {name!r}: {builder[0]}=: PostgreSQL databases get no automatic variants (the "
                "service never writes to your server); register variant schemas with schemas=base,variant1,..."
            )
        params = [p for p in params if p != "variants=none"]
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
    def from_specs(cls, specs: Sequence[str], cache_dir: Path | None = None) -> Registry:
        registry = cls(cache_dir=cache_dir)
        for spec in specs:
            name, sep, location = spec.partition("=")
            if not sep:
                raise RegistryError(f"--database {spec!r}: expected NAME=PATH[?OPTIONS]")
            registry.register(name.strip(), location.strip())
        return registry

    def mounts(self) -> list[Mount]:
        """What to bind read-only: database files alone, never their directories; and the
        duckdb package when a DuckDB database is registered."""
        binds = [
            Mount(str(path), inside)
            for db in self.databases.values()
            if db.engine in ("sqlite", "duckdb")
            for path, inside in zip(db.files, db.sandbox_paths(), strict=True)
        ]
        if any(db.engine == "duckdb" for db in self.databases.values()):
            binds += _duckdb_package()
        return binds


def _duckdb_package() -> list[Mount]:
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
    return [Mount.package(path) for path in paths]
