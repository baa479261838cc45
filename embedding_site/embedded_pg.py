"""Placeholder: the embedded PostgreSQL launcher (being written)."""


class EmbeddedDBError(RuntimeError):
    pass


def ensure_running(data_dir, port) -> str:
    raise NotImplementedError
