"""Drop embedding_queue_document_idx: the same btree on document_id as the foreign key's own
index (embedding_queue_document_id_b7d630df). Every queued row paid for both; measured on a
million-row backfill, the second index cost about 1.5 s of the statement's 20 s of CPU.

Dropped CONCURRENTLY so that a busy production queue keeps taking inserts meanwhile.
"""

from django.contrib.postgres.operations import RemoveIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    # Renamed after what it changes; databases that applied it under its old name keep it.
    replaces = [("queue_admin", "0012_bench6_drop_duplicate_document_index")]
    dependencies = [("queue_admin", "0011_provider_limits_sliding_window")]

    operations = [RemoveIndexConcurrently(model_name="queueitem", name="embedding_queue_document_idx")]
