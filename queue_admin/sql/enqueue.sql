-- The current definitions, applied by migrations. To change one, edit it here and add a
-- migration that applies this file again (see embedding_site/db/sql_files.py).
--
-- Queueing documents for embedding: sidecar_enqueue and the helpers it, the triggers and the
-- queue's Python code share.

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

-- About how many tokens a document holds: four characters a token for English prose (the
-- same figure as documents/providers/tokens.py's CHARS_PER_TOKEN; a test holds them together).
-- The queue's estimates, backfill's and the re-embed confirmation's all come from here; the
-- worker records the model's true count.
CREATE OR REPLACE FUNCTION sidecar_estimated_tokens(body text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
  SELECT char_length(body) / 4 + 1
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
         sidecar_estimated_tokens(d.content), 0,
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
