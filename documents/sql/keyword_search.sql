-- The current definitions, applied by migrations. To change one, edit it here and add a
-- migration that applies this file again (see embedding_site/db/sql_files.py).
--
-- Keyword search's words of each chunk (document_chunk_terms), kept by PostgreSQL for every
-- writer of the sidecar: the workers' COPY-and-upsert (documents/sidecar.py), and anything
-- else. Statement-level with transition tables: one set-based INSERT per statement, however
-- many chunks it wrote. Each row is made with the configuration in document_terms_config, the
-- one row saying which text search configuration keyword search uses
-- (documents/keyword_index.py changes it).

-- A chunk's terms: its document's title (weight A: a name in the title ranks first) and its
-- own text. The title matters for exact names: `base64.urlsafe_b64decode` is often only there.
-- The title is read twice: as written, and with . _ / : - as spaces, because the parser reads
-- `base64.urlsafe` as one host name, so that a search for `urlsafe_b64decode` (the words
-- urlsafe, b64decode) finds it as well as one for the whole name.
CREATE OR REPLACE FUNCTION sidecar_chunk_terms(config regconfig, title text, chunk_text text)
RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT setweight(
           to_tsvector(config, coalesce(title, ''))
           || to_tsvector(config, regexp_replace(coalesce(title, ''), '[._/:-]+', ' ', 'g')),
           'A')
         || to_tsvector(config, chunk_text)
$$;

CREATE OR REPLACE FUNCTION sidecar_write_chunk_terms() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  INSERT INTO document_chunk_terms AS t (embedding_id, document_id, model, config, terms)
  SELECT n.id, n.document_id, n.model, c.config,
         sidecar_chunk_terms(c.config::regconfig, d.title, n.source_text)
    FROM new_chunks n CROSS JOIN document_terms_config c
    LEFT JOIN source_documents d ON d.id = n.document_id
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

-- A new title (an edit, a mirrored row renamed) gives the document's chunks new terms. Row
-- level, only when the title changed; a small UPDATE of that document's terms rows.
CREATE OR REPLACE FUNCTION sidecar_retitle_chunk_terms() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  UPDATE document_chunk_terms t
     SET terms = sidecar_chunk_terms(t.config::regconfig, NEW.title, e.source_text)
    FROM document_embeddings e
   WHERE t.document_id = NEW.id AND e.id = t.embedding_id;
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER source_documents_retitle_chunk_terms
  AFTER UPDATE OF title ON source_documents
  FOR EACH ROW WHEN (OLD.title IS DISTINCT FROM NEW.title)
  EXECUTE FUNCTION sidecar_retitle_chunk_terms();
