"""A table of the host application, mirrored into source_documents.

Sidecar never writes to the table. Triggers on it (statement-level with transition tables for
inserts, deletes and truncates, so a COPY of a million rows is one pass; row by row for updates,
returning at once when no column read changed) call one generated function per source that
renders the changed rows and upserts or deletes their documents; everything downstream (the enqueue
triggers on source_documents, hash skipping, workers, search) is the same as for any document.

The trigger function can never make the host's write fail: everything that can fail is
checked when the source is attached (columns, types, template, filter), and whatever still
fails later (a column dropped under it) is caught inside the function, which then marks the
source broken with the reason instead of raising. It runs as Sidecar's database role
(SECURITY DEFINER, with Sidecar's search_path), so the application's role needs no rights on
Sidecar's tables.

Every identifier and literal in the generated SQL is quoted by psycopg; the one piece of SQL a
person writes, the row filter, is only accepted from superusers and is checked by PostgreSQL
(EXPLAIN) before it is installed.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import DatabaseError, connection, transaction
from psycopg import errors, sql

from documents.sources import templates

TITLE_MAX_CHARACTERS = 500  # source_documents.title is varchar(500)
COPY_BATCH_ROWS = 5000
PREVIEW_ROWS = 5
# Creating or dropping a trigger waits for a lock on the table; it must not queue the
# application's own writes behind it for long.
DDL_LOCK_TIMEOUT = "5s"
EVENTS = ("insert", "update", "delete", "truncate")
# Values PostgreSQL's text form does not make into readable text.
UNRENDERABLE = {"bytea": "binary data (bytea)"}


class TableSourceError(ValueError):
    """A table that cannot be attached as asked; the message says why and what to do."""


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str  # format_type(), e.g. "character varying(200)", "integer[]"
    problem: str = ""  # why it cannot be rendered, or ""


@dataclass(frozen=True)
class TableInfo:
    oid: int
    schema: str
    name: str
    columns: dict[str, ColumnInfo]
    key: list[str]  # the primary key's columns, in key order; [] without one

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Mapping:
    """What a source reads from its table: the source's `options` for kind "table"."""

    schema: str
    table: str
    oid: int
    key: list[str]
    key_types: list[str]
    template: str
    title_column: str = ""
    metadata_columns: list[str] = field(default_factory=list)
    where: str = ""

    def as_options(self) -> dict:
        return {
            "schema": self.schema,
            "table": self.table,
            "oid": self.oid,
            "key": self.key,
            "key_types": self.key_types,
            "template": self.template,
            "title_column": self.title_column,
            "metadata_columns": self.metadata_columns,
            "where": self.where,
        }

    @classmethod
    def from_options(cls, options: dict) -> "Mapping":
        return cls(**{name: options[name] for name in cls.__dataclass_fields__ if name in options})

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.table}"

    def columns_read(self) -> list[str]:
        """Every column a change must touch to change the document (the filter's aside)."""
        names = [*self.key, *templates.columns(templates.parse(self.template)), *self.metadata_columns]
        if self.title_column:
            names.append(self.title_column)
        return list(dict.fromkeys(names))


# --- Finding and describing tables --------------------------------------------------------------


def _fetch(query, params=None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def parse_table_name(text: str) -> tuple[str, str]:
    """'SCHEMA.TABLE' as PostgreSQL reads it (parse_ident: unquoted names fold to lower case,
    "Quoted Names" keep theirs); a bare TABLE is the one the search path finds."""
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction survives the error
            parts = _fetch("SELECT parse_ident(%s)", [text])[0][0]
    except Exception as exc:  # psycopg raises a DataError subclass for a malformed name
        raise TableSourceError(
            f"{text!r} is not a table name: write SCHEMA.TABLE, with double quotes around names that "
            f'have spaces, capitals or dots (e.g. public."Blog Posts"). PostgreSQL said: {exc}'
        ) from None
    if len(parts) == 1:  # as PostgreSQL would find it: the first schema on the search path that has it
        found = _fetch(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass(quote_ident(%s))",
            [parts[0]],
        )
        return (found[0][0] if found else "public"), parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise TableSourceError(f"{text!r} has {len(parts)} parts; write SCHEMA.TABLE.")


def own_table_oids() -> set[int]:
    """Sidecar's own tables (its models', django-q2's, auth's, django_migrations): never a source."""
    names = [*connection.introspection.django_table_names(include_views=False), "django_migrations"]
    rows = _fetch(
        "SELECT to_regclass(quote_ident(current_schema()) || '.' || quote_ident(name))::oid "
        "FROM unnest(%s::text[]) AS name",
        [names],
    )
    return {oid for (oid,) in rows if oid is not None}


def list_tables() -> list[tuple[str, str]]:
    """(schema, table) of every table this database user may read, Sidecar's own left out."""
    own = own_table_oids()
    rows = _fetch(
        """SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
              AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
              AND has_table_privilege(c.oid, 'SELECT')
            ORDER BY n.nspname, c.relname"""
    )
    return [(schema, name) for oid, schema, name in rows if oid not in own]


def describe(schema: str, name: str) -> TableInfo:
    """The table's columns (with what cannot be rendered) and primary key, or a clear error."""
    rows = _fetch(
        """SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s""",
        [schema, name],
    )
    if not rows:
        raise TableSourceError(
            f"There is no table {schema}.{name} in this database (names are exact: check the schema, "
            "and quote names with capitals)."
        )
    oid, kind = rows[0]
    if kind not in ("r", "p"):
        raise TableSourceError(f"{schema}.{name} is not a table (a view or another kind of relation).")
    if oid in own_table_oids():
        raise TableSourceError(
            f"{schema}.{name} is one of Sidecar's own tables; attach the application's tables instead."
        )
    if not _fetch("SELECT has_table_privilege(%s::oid, 'SELECT')", [oid])[0][0]:
        raise TableSourceError(
            f"The database user Sidecar connects as may not read {schema}.{name}: "
            f"GRANT SELECT ON {schema}.{name} TO {connection.settings_dict['USER'] or 'the Sidecar user'}."
        )
    return TableInfo(oid, schema, name, _columns(oid), _primary_key(oid))


def _columns(oid: int) -> dict[str, ColumnInfo]:
    rows = _fetch(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, t.typtype,
                  coalesce(e.typname, ''), coalesce(e.typtype, '')
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
             LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
            WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum""",
        [oid],
    )
    columns = {}
    for name, type_name, typname, typtype, element, element_typtype in rows:
        problem = ""
        if typname in UNRENDERABLE:
            problem = UNRENDERABLE[typname]
        elif element in UNRENDERABLE:
            problem = f"an array of {UNRENDERABLE[element]}"
        elif typtype == "c":
            problem = "a composite type"
        elif element_typtype == "c":
            problem = "an array of a composite type"
        columns[name] = ColumnInfo(name, type_name, problem)
    return columns


def _primary_key(oid: int) -> list[str]:
    rows = _fetch(
        """SELECT a.attname FROM pg_index i
             JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position) ON true
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.position""",
        [oid],
    )
    return [name for (name,) in rows]


# --- Checking a mapping ------------------------------------------------------------------------------


def build_mapping(
    table: TableInfo, *, template: str, title_column: str = "", metadata_columns=(), where: str = ""
) -> Mapping:
    """Check everything that could make the triggers fail later, and return the mapping."""
    if not table.key:
        raise TableSourceError(
            f"{table.qualified_name} has no primary key, so Sidecar cannot tell its rows apart to keep "
            f"their documents in step. Give it one (ALTER TABLE {table.qualified_name} ADD PRIMARY KEY "
            "(...)), or attach a view of it through a table that has one."
        )
    try:
        parts = templates.parse(template)
    except templates.TemplateError as exc:
        raise TableSourceError(str(exc)) from None
    used = {"template": templates.columns(parts), "metadata": list(metadata_columns)}
    if title_column:
        used["title"] = [title_column]
    for role, names in used.items():
        for name in names:
            column = table.columns.get(name)
            if column is None:
                raise TableSourceError(
                    f"The {role} names a column {name!r} that {table.qualified_name} does not have. "
                    f"Its columns: {', '.join(table.columns)}."
                )
            if column.problem and role != "metadata":
                raise TableSourceError(
                    f"Column {name!r} holds {column.problem} ({column.type}), which cannot be rendered as "
                    "text to embed; leave it out of the template and title."
                )
    mapping = Mapping(
        schema=table.schema,
        table=table.name,
        oid=table.oid,
        key=table.key,
        key_types=[table.columns[name].type for name in table.key],
        template=template,
        title_column=title_column or "",
        metadata_columns=list(dict.fromkeys(metadata_columns)),
        where=(where or "").strip(),
    )
    check_where(mapping)
    return mapping


def check_where(mapping: Mapping) -> None:
    """PostgreSQL checks the row filter: a boolean expression over the table's columns."""
    if not mapping.where:
        return
    # The row is named as the triggers name it: `blog_post.published` passes, and
    # `public.blog_post.published`, which the triggers could not resolve, is refused here.
    query = sql.SQL("EXPLAIN SELECT 1 FROM {table} AS {name} WHERE {keep}").format(
        table=_table(mapping), name=sql.Identifier(mapping.table), keep=_filter(mapping)
    )
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_text(query))
    except Exception as exc:  # any database error: a bad column, a type error, a syntax error
        raise TableSourceError(
            f"The row filter is not a boolean expression over {mapping.qualified_name}'s columns: "
            f"{str(exc).strip().splitlines()[0]}"
        ) from None


# --- The SQL of a mapping -------------------------------------------------------------------------


def quoted_name(schema: str, name: str) -> str:
    """SCHEMA.TABLE quoted so that `parse_table_name` reads it back, whatever the names hold."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, name))


def _text(query: sql.Composable) -> str:
    connection.ensure_connection()
    return query.as_string(connection.connection)


def _table(mapping: Mapping) -> sql.Composable:
    return sql.Identifier(mapping.schema, mapping.table)


def _own(name: str) -> sql.Composable:
    """One of Sidecar's tables, qualified: the trigger runs in the application's sessions."""
    return sql.Identifier(_own_schema(), name)


def _own_schema() -> str:
    return _fetch("SELECT current_schema()")[0][0]


def _filter(mapping: Mapping) -> sql.Composable:
    # On lines of its own: a trailing "--" comment in it cannot swallow what follows.
    return (
        sql.SQL("coalesce((\n{}\n), false)").format(sql.SQL(mapping.where))
        if mapping.where
        else sql.SQL("true")
    )


def _key(mapping: Mapping) -> sql.Composable:
    """The row's key as text: the value itself for a one-column key, a JSON array for more."""
    columns = [sql.Identifier(name) for name in mapping.key]
    if len(columns) == 1:
        return sql.SQL("{}::text").format(columns[0])
    return sql.SQL("jsonb_build_array({})::text").format(sql.SQL(", ").join(columns))


def _rendered(mapping: Mapping) -> sql.Composable:
    """key, title, content, metadata and keep (the filter) of the row in scope."""
    title = (
        sql.SQL("left(concat({}), {})").format(sql.Identifier(mapping.title_column), TITLE_MAX_CHARACTERS)
        if mapping.title_column
        else sql.Literal("")
    )
    metadata = sql.SQL("jsonb_build_object({})").format(
        sql.SQL(", ").join(
            sql.SQL("{}, {}").format(sql.Literal(name), sql.Identifier(name))
            for name in mapping.metadata_columns
        )
    )
    return sql.SQL("{key} AS k, {title} AS t, {content} AS c, {metadata} AS m, {keep} AS keep").format(
        key=_key(mapping),
        title=title,
        content=templates.to_sql(templates.parse(mapping.template)),
        metadata=metadata,
        keep=_filter(mapping),
    )


def _upsert(source_id: int, rows: sql.Composable, *, update: bool = True) -> sql.Composable:
    """INSERT the rendered `rows` (k, t, c, m) as documents of the source; an existing document
    is updated only if something differs, so an unchanged text queues nothing."""
    conflict = (
        sql.SQL(
            """DO UPDATE SET title = EXCLUDED.title, content = EXCLUDED.content, metadata = EXCLUDED.metadata,
                         updated_at = statement_timestamp()
            WHERE (d.title, d.content, d.metadata) IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.content, EXCLUDED.metadata)"""
        )
        if update
        else sql.SQL("DO NOTHING")
    )
    return sql.SQL(
        """INSERT INTO {documents} AS d (source_id, source_key, title, content, metadata, created_at, updated_at)
        SELECT {source}, k, t, c, m, statement_timestamp(), statement_timestamp() FROM ({rows}) AS r
        ON CONFLICT (source_id, source_key) {conflict}"""
    ).format(documents=_own("source_documents"), source=source_id, rows=rows, conflict=conflict)


def function_name(source_id: int) -> str:
    return f"sidecar_source_{source_id}_mirror"


def trigger_name(source_id: int, event: str) -> str:
    return f"sidecar_source_{source_id}_{event}"


def filter_columns(mapping: Mapping) -> list[str] | None:
    """The columns the row filter reads, as PostgreSQL resolves them (the dependencies of a
    throwaway view); None when it reads the whole row, or no column at all."""
    if not mapping.where:
        return []
    view = sql.SQL("CREATE TEMP VIEW sidecar_filter_probe AS SELECT 1 FROM {} WHERE {}").format(
        _table(mapping), _filter(mapping)
    )
    try:
        names = _probe_filter(view, mapping.oid)
    except DatabaseError:  # no TEMP right on the database, say: then every update is mirrored
        return None
    return None if not names or None in names else list(dict.fromkeys(names))


def _probe_filter(view: sql.Composable, oid: int) -> list[str | None]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_text(view))
        cursor.execute(
            """SELECT a.attname FROM pg_depend d
                 JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                 LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid AND d.refobjsubid > 0
                WHERE r.ev_class = 'pg_temp.sidecar_filter_probe'::regclass
                  AND d.refclassid = 'pg_class'::regclass AND d.refobjid = %s""",
            [oid],
        )
        names = [name for (name,) in cursor.fetchall()]
        transaction.set_rollback(True)
    return names


def _unchanged(mapping: Mapping) -> sql.Composable:
    """True when an update left every column the document and the filter read as it was (in
    their text form, so types without an equality operator compare too); false when unknown."""
    read = filter_columns(mapping)
    if read is None:
        return sql.SQL("false")
    columns = [sql.Identifier(name) for name in dict.fromkeys([*mapping.columns_read(), *read])]
    return sql.SQL("ROW({}) IS NOT DISTINCT FROM ROW({})").format(
        *(sql.SQL(", ").join(sql.SQL(row + ".{}::text").format(c) for c in columns) for row in ("OLD", "NEW"))
    )


def mirror_function(source_id: int, mapping: Mapping) -> sql.Composable:
    """The trigger function that keeps the source's documents in step with the table."""
    rendered = _rendered(mapping)
    documents = _own("source_documents")
    return sql.SQL(
        """CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $sidecar$
#variable_conflict use_column
-- A column may be called like one of PL/pgSQL's own variables: found, new, old, tg_op.
DECLARE
  sidecar_attempt integer := 0;
BEGIN
  LOOP
  sidecar_attempt := sidecar_attempt + 1;
  BEGIN
    IF TG_OP = 'INSERT' THEN
      {insert};
    ELSIF TG_OP = 'UPDATE' AND TG_LEVEL = 'ROW' THEN
      -- Row by row (a statement-level trigger would run for every update of the table): an
      -- update of columns the document does not read returns here, having run no statement.
      IF {unchanged} THEN
        RETURN NULL;
      END IF;
      WITH o AS (SELECT {rendered} FROM (SELECT OLD.*) AS {name}),
           n AS (SELECT {rendered} FROM (SELECT NEW.*) AS {name}),
           gone AS (DELETE FROM {documents} d USING o
                     WHERE d.source_id = {source} AND d.source_key = o.k
                       AND NOT EXISTS (SELECT 1 FROM n WHERE n.k = o.k AND n.keep)
                       -- another row of the same statement may have taken the key (keys swapped)
                       AND NOT EXISTS (SELECT 1 FROM {table} WHERE ({key_columns}) = ({old_key}) AND {keep}))
      {update};
    ELSIF TG_OP = 'UPDATE' THEN
      -- A partitioned table's: a row moved to another partition fires no row-level update
      -- trigger, but it is in the statement's transition tables.
      WITH o AS (SELECT {rendered} FROM sidecar_old AS {name}),
           n AS (SELECT {rendered} FROM sidecar_new AS {name}),
           gone AS (DELETE FROM {documents} d USING o
                     WHERE d.source_id = {source} AND d.source_key = o.k
                       AND NOT EXISTS (SELECT 1 FROM n WHERE n.k = o.k AND n.keep))
      {update};
    ELSIF TG_OP = 'DELETE' THEN
      DELETE FROM {documents} d USING (SELECT {key} AS k FROM sidecar_old) o
       WHERE d.source_id = {source} AND d.source_key = o.k;
    ELSE
      DELETE FROM {documents} WHERE source_id = {source};
    END IF;
    EXIT;
  EXCEPTION
    -- A deadlock with a worker writing the same documents (or a lock wait cut short): the
    -- block's changes and locks are rolled back, so trying again usually goes through.
    WHEN deadlock_detected OR serialization_failure OR lock_not_available THEN
      IF sidecar_attempt >= 3 THEN
        UPDATE {sources} SET state = 'broken',
               state_reason = format('A change to %s could not be mirrored (%s: %s, 3 tries). Resync the source.',
                                     {table_name}, SQLSTATE, SQLERRM)
         WHERE id = {source} AND state <> 'broken';
        EXIT;
      END IF;
    WHEN OTHERS THEN
      -- Never fail the application's write: the source is marked broken, with the reason, and
      -- `source resync` catches its documents up once the cause is fixed.
      UPDATE {sources} SET state = 'broken',
             state_reason = format('A change to %s could not be mirrored (%s: %s). Fix the cause, then resync.',
                                   {table_name}, SQLSTATE, SQLERRM)
       WHERE id = {source} AND state <> 'broken';
      EXIT;
  END;
  END LOOP;
  RETURN NULL;
END
$sidecar$"""
    ).format(
        function=sql.Identifier(_own_schema(), function_name(source_id)),
        insert=_upsert(
            source_id,
            sql.SQL("SELECT k, t, c, m FROM (SELECT {} FROM sidecar_new AS {}) r WHERE keep").format(
                rendered, sql.Identifier(mapping.table)
            ),
        ),
        rendered=rendered,
        documents=documents,
        source=source_id,
        update=_upsert(
            source_id,
            sql.SQL(
                """SELECT n.k, n.t, n.c, n.m FROM n LEFT JOIN o ON o.k = n.k
                    WHERE n.keep AND (o.k IS NULL OR NOT o.keep OR (o.t, o.c, o.m) IS DISTINCT FROM (n.t, n.c, n.m))"""
            ),
        ),
        key=_key(mapping),
        sources=_own("document_sources"),
        table_name=sql.Literal(mapping.qualified_name),
        unchanged=_unchanged(mapping),
        table=_table(mapping),
        key_columns=sql.SQL(", ").join(sql.Identifier(name) for name in mapping.key),
        old_key=sql.SQL(", ").join(sql.SQL("OLD.{}").format(sql.Identifier(name)) for name in mapping.key),
        keep=_filter(mapping),
        name=sql.Identifier(mapping.table),
    )


def install(source_id: int, mapping: Mapping) -> None:
    """Create the source's trigger function and its four triggers, in one transaction."""
    table, function = _table(mapping), sql.Identifier(_own_schema(), function_name(source_id))
    # Updates row by row: a statement-level trigger (and its transition tables) would cost
    # every update of the table, including the many that touch no column the document reads.
    # No WHEN clause or column list: either would stop the application dropping a column.
    # A partitioned table keeps a statement-level one: see the function's UPDATE branches.
    partitioned = _fetch("SELECT relkind = 'p' FROM pg_class WHERE oid = %s", [mapping.oid])[0][0]
    transitions = {
        "insert": "REFERENCING NEW TABLE AS sidecar_new FOR EACH STATEMENT",
        "update": "REFERENCING OLD TABLE AS sidecar_old NEW TABLE AS sidecar_new FOR EACH STATEMENT"
        if partitioned
        else "FOR EACH ROW",
        "delete": "REFERENCING OLD TABLE AS sidecar_old FOR EACH STATEMENT",
        "truncate": "FOR EACH STATEMENT",
    }
    statements = [mirror_function(source_id, mapping)]
    for event in EVENTS:
        statements.append(
            sql.SQL("CREATE OR REPLACE TRIGGER {name} AFTER {event} ON {table} {transition} "
                    "EXECUTE FUNCTION {function}()").format(
                name=sql.Identifier(trigger_name(source_id, event)),
                event=sql.SQL(event.upper()),
                table=table,
                transition=sql.SQL(transitions[event]),
                function=function,
            )
        )  # fmt: skip
    _run_ddl(statements, mapping, "install Sidecar's triggers on")


def remove(source_id: int, mapping: Mapping) -> None:
    """Drop the source's triggers (if its table still exists) and its function."""
    statements = []
    if table_exists(mapping.oid):
        current = names_of(mapping.oid)
        for event in EVENTS:
            statements.append(
                sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                    sql.Identifier(trigger_name(source_id, event)), sql.Identifier(*current)
                )
            )
    statements.append(
        sql.SQL("DROP FUNCTION IF EXISTS {}()").format(
            sql.Identifier(_own_schema(), function_name(source_id))
        )
    )
    _run_ddl(statements, mapping, "remove Sidecar's triggers from")


def _run_ddl(statements: list[sql.Composable], mapping: Mapping, doing: str) -> None:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [DDL_LOCK_TIMEOUT])
            for statement in statements:
                cursor.execute(_text(statement))
    except DatabaseError as exc:  # Django's wrapper; psycopg's own error is its cause
        _ddl_refused(exc.__cause__, mapping, doing)
        raise


def _ddl_refused(cause: Exception | None, mapping: Mapping, doing: str) -> None:
    """Raise the TableSourceError that says what to do about a refused trigger change, if known."""
    if isinstance(cause, errors.LockNotAvailable):
        raise TableSourceError(
            f"Could not {doing} {mapping.qualified_name} within {DDL_LOCK_TIMEOUT}: a long transaction is "
            "using the table. Nothing was changed; try again when it has finished."
        ) from None
    if isinstance(cause, errors.InsufficientPrivilege):
        raise TableSourceError(
            f"Sidecar's database user may not {doing} {mapping.qualified_name} ({cause}). The table's owner "
            f"can allow it: GRANT TRIGGER ON {mapping.qualified_name} TO "
            f"{connection.settings_dict['USER'] or 'the Sidecar user'}."
        ) from None


# --- Copying rows ----------------------------------------------------------------------------------


def preview(mapping: Mapping, rows: int = PREVIEW_ROWS) -> list[dict]:
    """A few rows as their documents would be (rendered by the same SQL as the triggers)."""
    query = sql.SQL("SELECT k, t, c, m FROM (SELECT {} FROM {}) r WHERE keep LIMIT {}").format(
        _rendered(mapping), _table(mapping), rows
    )
    # A raw cursor hands jsonb over as text (Django parses JSON in its fields, not its cursor).
    return [
        {"key": key, "title": title, "content": content, "metadata": json.loads(metadata)}
        for key, title, content, metadata in _fetch(_text(query))
    ]


@dataclass(frozen=True)
class RowFigures:
    rows: int  # rows of the table that pass the filter
    estimated_tokens: int


def measure(mapping: Mapping) -> RowFigures:
    """How many rows would become documents and about how many tokens they hold (one pass)."""
    query = sql.SQL(
        "SELECT count(*), coalesce(sum(sidecar_estimated_tokens(c)), 0) FROM (SELECT {} FROM {}) r WHERE keep"
    ).format(_rendered(mapping), _table(mapping))
    rows, tokens = _fetch(_text(query))[0]
    return RowFigures(rows, int(tokens))


def count_rows(mapping: Mapping) -> int:
    return _fetch(_text(sql.SQL("SELECT count(*) FROM {}").format(_table(mapping))))[0][0]


def copy_rows(
    source_id: int,
    mapping: Mapping,
    *,
    update: bool,
    after: list[str] | None = None,
    batch_done: Callable[[int, list[str]], bool] | None = None,
) -> tuple[int, list[str] | None]:
    """Render the table's rows into the source's documents, COPY_BATCH_ROWS at a time in key
    order, each batch its own short transaction (flat memory; the application's writes never
    wait for it). Rows that no longer pass the filter lose their documents.

    With `update` off (attaching) an existing document is left alone: the triggers, installed
    before, wrote it from a newer version of the row. Starts after the key `after` (the text
    of each key column) when given. `batch_done(rows_read, last_key)` runs after each batch;
    when it returns True the copy stops there. Returns the rows read and the key to go on
    after, or None when the table is done."""
    key = sql.SQL(", ").join(sql.Identifier(name) for name in mapping.key)
    key_copies = sql.SQL(", ").join(
        sql.SQL("{0} AS {1}, {0}::text AS {2}").format(
            sql.Identifier(name), sql.Identifier(f"sidecar_raw_{i}"), sql.Identifier(f"sidecar_key_{i}")
        )
        for i, name in enumerate(mapping.key)
    )
    # Everything but the lower bound is the same for every batch: composed once.
    parts = {
        "rendered": _rendered(mapping),
        "key_copies": key_copies,
        "table": _table(mapping),
        "key": key,
        "limit": sql.Literal(COPY_BATCH_ROWS),
        "upsert": _upsert(source_id, sql.SQL("SELECT k, t, c, m FROM batch WHERE keep"), update=update),
        "documents": _own("source_documents"),
        "source": sql.Literal(source_id),
        "last_key": sql.SQL(", ").join(sql.Identifier(f"sidecar_key_{i}") for i in range(len(mapping.key))),
        "last_order": sql.SQL(", ").join(
            sql.SQL("{} DESC").format(sql.Identifier(f"sidecar_raw_{i}")) for i in range(len(mapping.key))
        ),
    }
    seen = 0
    while True:
        bound = sql.SQL("")
        if after is not None:
            bound = sql.SQL("WHERE ({}) > ({})").format(
                key,
                sql.SQL(", ").join(
                    sql.SQL("{}::{}").format(sql.Literal(value), sql.SQL(type_name))
                    for value, type_name in zip(after, mapping.key_types, strict=True)
                ),
            )
        # The data-modifying CTEs run to completion whether or not the SELECT reads them.
        query = sql.SQL(
            """WITH batch AS MATERIALIZED (
                   SELECT {rendered}, {key_copies} FROM {table} {bound} ORDER BY {key} LIMIT {limit}),
                 written AS ({upsert}),
                 dropped AS (DELETE FROM {documents} d USING batch b
                              WHERE d.source_id = {source} AND d.source_key = b.k AND NOT b.keep)
               SELECT (SELECT count(*) FROM batch),
                      (SELECT ARRAY[{last_key}] FROM batch ORDER BY {last_order} LIMIT 1)"""
        ).format(bound=bound, **parts)
        with transaction.atomic():
            read, last = _fetch(_text(query))[0]
        seen += read
        if read < COPY_BATCH_ROWS:
            return seen, None
        after = last
        if batch_done and batch_done(seen, after):
            return seen, after


def analyze_documents() -> None:
    """Fresh planner statistics after a copy. Until autovacuum gets round to it (never, when the
    copy is under a tenth of a big table) PostgreSQL takes the source's new documents for none,
    and the triggers' joins by key turn into a read of all of them on every write to the table.
    Only the columns those joins use: the texts are the costly part of a full ANALYZE."""
    with connection.cursor() as cursor:
        cursor.execute(_text(sql.SQL("ANALYZE {} (source_id, source_key)").format(_own("source_documents"))))


def delete_vanished(source_id: int, mapping: Mapping) -> int:
    """Delete the source's documents whose row is gone or no longer passes the filter (a row
    deleted while it was being copied). Returns how many."""
    query = sql.SQL(
        """DELETE FROM {documents} d WHERE d.source_id = {source}
             AND NOT EXISTS (SELECT 1 FROM (SELECT {key} AS k FROM {table} WHERE {keep}) r WHERE r.k = d.source_key)"""
    ).format(
        documents=_own("source_documents"),
        source=source_id,
        key=_key(mapping),
        table=_table(mapping),
        keep=_filter(mapping),
    )
    with connection.cursor() as cursor:
        cursor.execute(_text(query))
        return cursor.rowcount


# --- Watching the table -------------------------------------------------------------------------------


def table_exists(oid: int) -> bool:
    return bool(_fetch("SELECT 1 FROM pg_class WHERE oid = %s", [oid]))


def names_of(oid: int) -> tuple[str, str]:
    return _fetch(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s",
        [oid],
    )[0]


def problems(source_id: int, mapping: Mapping) -> list[str]:
    """What is wrong with the attached table now (dropped, renamed, a column gone, a trigger
    removed or disabled, the filter no longer valid); [] when all is well."""
    if not table_exists(mapping.oid):
        return [f"The table {mapping.qualified_name} was dropped. Detach the source to remove its documents."]
    schema, name = names_of(mapping.oid)
    found = []
    if (schema, name) != (mapping.schema, mapping.table):
        found.append(
            f"The table {mapping.qualified_name} was renamed to {schema}.{name}. Resync the source to follow "
            "it, or detach it."
        )
    columns = _columns(mapping.oid)
    missing = [column for column in mapping.columns_read() if column not in columns]
    if missing:
        found.append(
            f"Column(s) {', '.join(missing)} of {schema}.{name} no longer exist (dropped or renamed). Edit the "
            "source's template, title and metadata, or detach it."
        )
    triggers = dict(
        _fetch("SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = %s AND tgname LIKE %s",
               [mapping.oid, f"sidecar_source_{source_id}_%"])
    )  # fmt: skip
    absent = [event for event in EVENTS if trigger_name(source_id, event) not in triggers]
    disabled = [name for name, enabled in triggers.items() if enabled == "D"]
    if absent:
        found.append(
            f"Sidecar's {', '.join(absent)} trigger(s) on {schema}.{name} were removed. Resync the source to reinstall them."
        )
    if disabled:
        found.append(
            f"Sidecar's trigger(s) {', '.join(disabled)} on {schema}.{name} are disabled: changes are not "
            f"mirrored. ALTER TABLE {schema}.{name} ENABLE TRIGGER ... , then resync."
        )
    if not missing and mapping.where:
        try:
            check_where(Mapping.from_options({**mapping.as_options(), "schema": schema, "table": name}))
        except TableSourceError as exc:
            found.append(str(exc))
    return found
