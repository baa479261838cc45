-- The current definitions, applied by migrations. To change one, edit it here and add a
-- migration that applies this file again (see embedding_site/db/sql_files.py).
--
-- Enqueue in the database: statement-level triggers on source_documents with transition
-- tables, so a COPY or INSERT ... SELECT of 100,000 rows runs one INSERT ... SELECT into the
-- queue, not 100,000 trigger calls. They fire for every writer (Django, psql, COPY, another
-- service), which is the point: correctness never depends on Django signals. Logical
-- replication applies rows with triggers off by default; the reconciliation job catches what
-- that (or a disabled trigger) misses. The functions they call are in enqueue.sql.
--
-- Each document is queued at its source's priority, and not at all while its source is paused
-- (document_sources.enabled). The functions carry Sidecar's search_path: they also run inside
-- the application's sessions (a write to an attached table, mirrored here), whose search_path
-- may not reach Sidecar's schema.

CREATE OR REPLACE FUNCTION sidecar_documents_inserted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  PERFORM sidecar_enqueue(g.ids, g.priority)
     FROM (SELECT s.default_priority AS priority, array_agg(n.id) AS ids
             FROM new_rows n JOIN document_sources s ON s.id = n.source_id
            WHERE s.enabled AND NOT sidecar_is_blank(n.content)
            GROUP BY s.default_priority) g;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION sidecar_documents_updated() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  queued bigint;
BEGIN
  -- One statement with data-modifying CTEs (no temp table: creating one per UPDATE would
  -- churn the system catalogs on a busy table).
  WITH changed AS MATERIALIZED (
    SELECT n.id, sidecar_is_blank(n.content) AS blank, s.default_priority AS priority, s.enabled
      FROM new_rows n JOIN old_rows o ON o.id = n.id JOIN document_sources s ON s.id = n.source_id
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
  SELECT sum(sidecar_enqueue(g.ids, g.priority)) INTO queued
    FROM (SELECT priority, array_agg(id) AS ids FROM changed WHERE NOT blank AND enabled GROUP BY priority) g;
  RETURN NULL;
END
$$;

-- OR REPLACE keeps the file idempotent without DROP TRIGGER, which would lock the table
-- against readers too.
CREATE OR REPLACE TRIGGER source_documents_enqueue_on_insert
  AFTER INSERT ON source_documents REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION sidecar_documents_inserted();

CREATE OR REPLACE TRIGGER source_documents_enqueue_on_update
  AFTER UPDATE ON source_documents REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION sidecar_documents_updated();
