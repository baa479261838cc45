"""Sources of documents, by kind. `tables`: a table of the host application in the same
database, mirrored into source_documents by triggers on that table."""
