"""Raw speed of the local embedding model: docs/s by batch size and intra-op threads.

Not a test (CONVENTIONS 12): it measures and prints. The texts are 120 synthetic words each
(fixed seed, so every run embeds the same texts), about 122 tokens with [CLS] and [SEP].
Each figure is the median of --repeats timed passes over --docs texts, after one warm-up
batch, with the best pass beside it (on a shared machine the best pass is the one least
disturbed by other processes); model load time is reported separately.

    python bench/local_model_speed.py                 # batches 1 8 16 32, threads 1 2
    python bench/local_model_speed.py --docs 8 --repeats 1 --batches 8 --threads 1   # smoke run
"""

import argparse
import random
import resource
import statistics
import time

from documents.providers.local import LocalEmbeddingProvider

WORDS = (
    "the of and to in is that for it as was with be by on not this are or from at which but have "
    "an they you were her she there one all we their been has when who will more no if out so said "
    "what up its about into than them can only other new some could time these two may then do first "
    "any now such like our over even most made after also did many before must through back years "
    "where much your way well down should because each just those people data queue worker model "
    "vector database search document update index lease batch retry table column server request"
).split()


def synthetic_texts(count: int, words_per_text: int = 120, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=words_per_text)) for _ in range(count)]


def pass_rates(
    provider: LocalEmbeddingProvider, texts: list[str], batch_size: int, repeats: int
) -> list[float]:
    """docs/s of each of ``repeats`` passes over ``texts`` in calls of ``batch_size``."""
    provider.embed(texts[:batch_size])  # warm-up: first-run allocations are not throughput
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(texts), batch_size):
            provider.embed(texts[start : start + batch_size])
        rates.append(len(texts) / (time.perf_counter() - started))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=64, help="texts per timed pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--sub-batch-size",
        type=int,
        default=None,
        help="the provider's internal sub-batch (default: the batch size, so each row times "
        "the model itself at that batch size)",
    )
    args = parser.parse_args()

    texts = synthetic_texts(args.docs)
    print(f"{args.docs} texts of 120 words, median of {args.repeats} passes")
    for threads in args.threads:
        started = time.perf_counter()
        LocalEmbeddingProvider(intra_op_threads=threads).embed(["warm up"])
        print(f"threads={threads}: model load {time.perf_counter() - started:.2f} s")
        for batch_size in args.batches:
            # Same process-wide model for every batch size; only the sub-batching differs.
            provider = LocalEmbeddingProvider(threads, sub_batch_size=args.sub_batch_size or batch_size)
            rates = pass_rates(provider, texts, batch_size, args.repeats)
            print(
                f"  threads={threads} batch={batch_size:>3}: {statistics.median(rates):6.1f} docs/s"
                f" (best pass {max(rates):.1f})"
            )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mib:.0f} MiB (every session of this run loaded)")


if __name__ == "__main__":
    main()
