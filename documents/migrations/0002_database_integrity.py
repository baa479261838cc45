"""What the ORM cannot say: integrity that must hold for writes from psql, COPY or another
service, not only for Django. (A separate migration because Django adds foreign keys at the
end of the migration that creates them.)"""

from django.db import migrations

METADATA_IS_OBJECT = """
ALTER TABLE source_documents ADD CONSTRAINT source_documents_metadata_is_object
  CHECK (jsonb_typeof(metadata) = 'object')
"""

# Deleting a document deletes its chunks in the database, whoever deletes it.
CHUNKS_CASCADE = """
DO $$
DECLARE fk text;
BEGIN
  SELECT conname INTO STRICT fk FROM pg_constraint
   WHERE conrelid = 'document_embeddings'::regclass AND contype = 'f';
  EXECUTE format('ALTER TABLE document_embeddings DROP CONSTRAINT %I', fk);
END $$;
ALTER TABLE document_embeddings ADD CONSTRAINT document_embeddings_document_fk
  FOREIGN KEY (document_id) REFERENCES source_documents (id)
  ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;
"""


class Migration(migrations.Migration):
    dependencies = [("documents", "0001_initial")]

    operations = [
        migrations.RunSQL(
            METADATA_IS_OBJECT,
            reverse_sql="ALTER TABLE source_documents DROP CONSTRAINT source_documents_metadata_is_object",
        ),
        migrations.RunSQL(CHUNKS_CASCADE, reverse_sql=migrations.RunSQL.noop),
    ]
