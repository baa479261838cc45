from django.core.management.base import BaseCommand, CommandError

from documents import vector_index
from queue_admin import vector_indexes


class Command(BaseCommand):
    help = (
        "The vector index of each model in use (documents/vector_index.py): `status` says which "
        "models have one, which are building and what search reads; `build MODEL` builds one now "
        "(CONCURRENTLY: searches and workers go on; what the maintain_vector_indexes schedule runs); "
        "`drop MODEL` drops one (search then reads that model's chunks exactly)."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=("status", "build", "drop"))
        parser.add_argument("model", nargs="?", help="the model id (build, drop); `status` lists them")

    def handle(self, *args, action, model=None, **options):
        if action == "status":
            for state in vector_indexes.states():
                self.stdout.write(f"{state.model}: {state.describe()}")
            return
        if not model:
            raise CommandError(
                f"`vector_index {action}` needs the model's id: `vector_index status` lists them."
            )
        if action == "drop":
            dropped = vector_index.drop(model)
            self.stdout.write(f"Dropped the index of {model}." if dropped else f"{model} has no index.")
            return
        if vector_index.count_chunks(model, 1) == 0:
            raise CommandError(f"There are no chunks of model {model!r}: nothing to index.")
        try:
            seconds = vector_index.build(model)
        except vector_index.BuildBusy as exc:
            raise CommandError(f"{exc}; `vector_index status` shows its progress.") from None
        except vector_index.NotIndexable as exc:
            raise CommandError(str(exc)) from None
        state = vector_index.state(model)
        if seconds == 0.0:
            self.stdout.write(f"{model} already has its index: {state.describe()}")
        else:
            self.stdout.write(f"Built the index of {model} in {seconds:.1f} s: {state.describe()}")
