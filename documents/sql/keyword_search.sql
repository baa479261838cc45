-- The current definitions, applied by migrations. To change one, edit it here and add a
-- migration that applies this file again (see embedding_site/db/sql_files.py).
--
-- Keyword search's words of each chunk (document_chunk_terms), kept by PostgreSQL for every
-- writer of the sidecar: the workers' COPY-and-upsert (documents/sidecar.py), and anything
-- else. Statement-level with transition tables: one set-based INSERT per statement, however
-- many chunks it wrote. Each row is made with the configuration in document_terms_config, the
-- one row saying which text search configuration keyword search uses
-- (documents/keyword_index.py changes it).

CREATE OR REPLACE FUNCTION sidecar_write_chunk_terms() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  INSERT INTO document_chunk_terms AS t (embedding_id, document_id, model, config, terms)
  SELECT n.id, n.document_id, n.model, c.config, to_tsvector(c.config::regconfig, n.source_text)
    FROM new_chunks n CROSS JOIN document_terms_config c
  ON CONFLICT (embedding_id) DO UPDATE
     SET document_id = EXCLUDED.document_id, model = EXCLUDED.model, config = EXCLUDED.config,
         terms = EXCLUDED.terms;
  RETURN NULL;
END
$$;

-- An upsert fires both: AFTER INSERT for the chunks it inserted, AFTER UPDATE for those it
-- changed. (A transition table cannot go with UPDATE OF source_text: every update rewrites
-- the chunk's terms, a small cost beside the vector's own index.)
CREATE OR REPLACE TRIGGER document_embeddings_terms_after_insert
  AFTER INSERT ON document_embeddings REFERENCING NEW TABLE AS new_chunks
  FOR EACH STATEMENT EXECUTE FUNCTION sidecar_write_chunk_terms();

CREATE OR REPLACE TRIGGER document_embeddings_terms_after_update
  AFTER UPDATE ON document_embeddings REFERENCING NEW TABLE AS new_chunks
  FOR EACH STATEMENT EXECUTE FUNCTION sidecar_write_chunk_terms();
