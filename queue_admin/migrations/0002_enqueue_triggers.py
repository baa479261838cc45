"""Enqueue in the database: triggers on source_documents, and the queue's foreign key.

Statement-level triggers with transition tables: a COPY or INSERT … SELECT of 100,000 rows
runs one INSERT … SELECT into the queue, not 100,000 trigger calls. They fire for every
writer — Django, psql, COPY, another service — which is the point: correctness never depends
on Django signals. Logical replication applies rows with triggers off by default; the
reconciliation job catches what that (or a disabled trigger) misses.
"""

from django.db import migrations

HELPERS = (
    r"""
CREATE OR REPLACE FUNCTION sidecar_priority_rank(priority text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE priority WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END
$$;

-- Empty or whitespace-only text has nothing to embed.
CREATE OR REPLACE FUNCTION sidecar_is_blank(body text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
  SELECT body IS NULL OR body ~ '^[[:space:]]*$'
$$;

-- A whole-number queue setting, so the triggers honour max_retries as the workers do.
CREATE OR REPLACE FUNCTION sidecar_config_int(key text, fallback integer) RETURNS integer
LANGUAGE sql STABLE AS $$
  SELECT COALESCE(
    (SELECT (config_value #>> '{}')::integer FROM embedding_queue_config WHERE config_key = key),
    fallback)
$$;

-- Queue the given documents at `priority`. A document that already has a live item keeps
-- that one (edits coalesce), raised to `priority` if that is higher. `force` marks the item
-- to be embedded even if the sidecar already holds its text (a re-embed asked for by a
-- person, or backfill --all). Returns rows queued or changed. Shared by the triggers,
-- backfill, reconciliation and the admin.
CREATE OR REPLACE FUNCTION sidecar_enqueue(document_ids uuid[], priority text, force boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  affected bigint;
  retries integer := sidecar_config_int('max_retries', 3);  -- once, not per row
BEGIN
  INSERT INTO embedding_queue AS q (
    id, document_id, operation, status, priority, retry_count, max_retries, next_attempt_at,
    error_kind, error_message, worker_id, estimated_tokens, rate_limit_delay_ms, metadata,
    created_at, updated_at)
  SELECT gen_random_uuid(), d.id, 'embed', 'pending', sidecar_enqueue.priority, 0,
         retries, statement_timestamp(), '', '', '',
         -- about four characters per token for English prose; the worker records the truth
         char_length(d.content) / 4 + 1, 0,
         CASE WHEN force THEN '{"force": true}'::jsonb ELSE '{}'::jsonb END,
         statement_timestamp(), statement_timestamp()
    -- A join, not "id = ANY(document_ids)": with 100,000 ids and no statistics yet the
    -- planner may filter a sequential scan by the array, one linear search per row.
    FROM unnest(document_ids) AS wanted(id)
    JOIN source_documents d ON d.id = wanted.id
  ON CONFLICT (document_id) WHERE status IN ('pending', 'processing', 'rate_limited') DO UPDATE
     SET priority = CASE WHEN sidecar_priority_rank(EXCLUDED.priority) > sidecar_priority_rank(q.priority)
                         THEN EXCLUDED.priority ELSE q.priority END,
         metadata = q.metadata || EXCLUDED.metadata,
         updated_at = statement_timestamp()
   WHERE sidecar_priority_rank(EXCLUDED.priority) > sidecar_priority_rank(q.priority) OR force;
  GET DIAGNOSTICS affected = ROW_COUNT;
  RETURN affected;
END
$$;
"""
)

TRIGGERS = (
    r"""
CREATE OR REPLACE FUNCTION sidecar_documents_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM sidecar_enqueue(ARRAY(SELECT id FROM new_rows WHERE NOT sidecar_is_blank(content)), 'medium');
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION sidecar_documents_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  queued bigint;
BEGIN
  -- One statement with data-modifying CTEs (no temp table: creating one per UPDATE would
  -- churn the system catalogs on a busy table).
  WITH changed AS MATERIALIZED (
    SELECT n.id, sidecar_is_blank(n.content) AS blank
      FROM new_rows n JOIN old_rows o ON o.id = n.id
     WHERE n.content IS DISTINCT FROM o.content
       -- the text went back to what the sidecar already holds: nothing to do
       AND NOT EXISTS (SELECT 1 FROM document_embeddings e
                        WHERE e.document_id = n.id AND e.document_text_hash = n.content_hash)
  ),
  -- Emptied documents lose their chunks instead of being queued, and their live items are
  -- cancelled; a worker holding one then fails its compare-and-set and drops the work.
  dropped_chunks AS (
    DELETE FROM document_embeddings e USING changed c WHERE e.document_id = c.id AND c.blank
  ),
  cancelled AS (
    UPDATE embedding_queue q
       SET status = 'cancelled', error_message = 'content was emptied', lease_expires_at = NULL,
           updated_at = statement_timestamp()
      FROM changed c
     WHERE q.document_id = c.id AND c.blank AND q.status IN ('pending', 'processing', 'rate_limited')
  )
  SELECT sidecar_enqueue(ARRAY(SELECT id FROM changed WHERE NOT blank), 'medium') INTO queued;
  RETURN NULL;
END
$$;

CREATE TRIGGER source_documents_enqueue_on_insert
  AFTER INSERT ON source_documents REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION sidecar_documents_inserted();

CREATE TRIGGER source_documents_enqueue_on_update
  AFTER UPDATE ON source_documents REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION sidecar_documents_updated();
"""
)

DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS source_documents_enqueue_on_insert ON source_documents;
DROP TRIGGER IF EXISTS source_documents_enqueue_on_update ON source_documents;
DROP FUNCTION IF EXISTS sidecar_documents_inserted();
DROP FUNCTION IF EXISTS sidecar_documents_updated();
DROP FUNCTION IF EXISTS sidecar_enqueue(uuid[], text, boolean);
DROP FUNCTION IF EXISTS sidecar_config_int(text, integer);
DROP FUNCTION IF EXISTS sidecar_is_blank(text);
DROP FUNCTION IF EXISTS sidecar_priority_rank(text);
"""

QUEUE_FK_CASCADE = """
DO $$
DECLARE fk text;
BEGIN
  SELECT conname INTO STRICT fk FROM pg_constraint
   WHERE conrelid = 'embedding_queue'::regclass AND contype = 'f'
     AND confrelid = 'source_documents'::regclass;
  EXECUTE format('ALTER TABLE embedding_queue DROP CONSTRAINT %I', fk);
END $$;
ALTER TABLE embedding_queue ADD CONSTRAINT embedding_queue_document_fk
  FOREIGN KEY (document_id) REFERENCES source_documents (id)
  ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("queue_admin", "0001_initial"),
        ("documents", "0002_database_integrity"),
    ]

    operations = [
        migrations.RunSQL(QUEUE_FK_CASCADE, reverse_sql=migrations.RunSQL.noop),
        migrations.RunSQL(HELPERS, reverse_sql=migrations.RunSQL.noop),
        migrations.RunSQL(TRIGGERS, reverse_sql=DROP_TRIGGERS),
    ]
