"""File sources: parse speed per format (files/s, MB/s) on a generated corpus, parse time apart
from embedding (nothing is embedded here), a re-sync of unchanged files in a folder and in a
bucket (moto's S3 server on loopback, in this process), and the Python heap while parsing a
200-page PDF and while taking in and syncing a 100 MB upload.

The corpus is made at run time: PDFs of 1–50 pages (reportlab, with an outline), HTML pages
with menus, footers and scripts around the article, Markdown with nested headings, DOCX with
headings and a table; text from bench.corpus (seeded, the same every run).
"""

import logging
import os
import random
import tempfile
import time
import tracemalloc
import zipfile
from contextlib import contextmanager
from pathlib import Path

from bench import common, corpus

DEFAULT_FILES = 40  # per format
QUICK_FILES = 3
DEFAULT_RESYNC_FILES = 10_000
QUICK_RESYNC_FILES = 50
RESYNC_TARGET_S = 10.0
BIG_PDF_PAGES = 200
UPLOAD_MB = 100
QUICK_UPLOAD_MB = 2
UPLOAD_FILE_MB = 1  # the upload is a zip of text files of this size


def paragraphs(rng: random.Random, count: int, words: int = 60) -> list[str]:
    return [" ".join(rng.choices(corpus.WORDS, k=words)).capitalize() + "." for _ in range(count)]


def make_pdf(path: Path, pages: int, rng: random.Random) -> None:
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path))
    for page in range(1, pages + 1):
        if page % 5 == 1:
            pdf.bookmarkPage(f"p{page}")
            pdf.addOutlineEntry(f"Chapter {page // 5 + 1}", f"p{page}", 0)
        y = 760
        for line in paragraphs(rng, 40, 12):
            pdf.drawString(50, y, line)
            y -= 18
        pdf.showPage()
    pdf.save()


def make_html(path: Path, rng: random.Random) -> None:
    body = "".join(
        f"<h2>Part {n}</h2>" + "".join(f"<p>{p}</p>" for p in paragraphs(rng, 4)) for n in range(1, 6)
    )
    path.write_text(
        "<html><head><title>Guide</title><script>var tracking = 1;</script></head><body>"
        "<nav><a href='/'>Home</a> | <a href='/about'>About</a></nav>"
        f"<main><h1>Guide</h1>{body}</main><footer>Copyright 2026, all rights reserved</footer></body></html>"
    )


def make_markdown(path: Path, rng: random.Random) -> None:
    parts = ["# Guide"]
    for n in range(1, 6):
        parts += [f"## Part {n}", *paragraphs(rng, 2), f"### Detail {n}", *paragraphs(rng, 2)]
    path.write_text("\n\n".join(parts) + "\n")


def make_docx(path: Path, rng: random.Random) -> None:
    import docx

    document = docx.Document()
    for n in range(1, 6):
        document.add_heading(f"Part {n}", level=1)
        for text in paragraphs(rng, 4):
            document.add_paragraph(text)
    table = document.add_table(rows=3, cols=3)
    for row in table.rows:
        for cell in row.cells:
            cell.text = rng.choice(corpus.WORDS)
    document.save(str(path))


def make_corpus(folder: Path, files: int) -> dict[str, list[Path]]:
    rng = random.Random(corpus.SEED)
    made: dict[str, list[Path]] = {"pdf": [], "html": [], "markdown": [], "docx": []}
    for n in range(files):
        pages = 1 + (n * 7) % 50  # 1 to 50 pages
        for kind, suffix, maker in (
            ("pdf", ".pdf", lambda p, pages=pages: make_pdf(p, pages, rng)),
            ("html", ".html", lambda p: make_html(p, rng)),
            ("markdown", ".md", lambda p: make_markdown(p, rng)),
            ("docx", ".docx", lambda p: make_docx(p, rng)),
        ):
            path = folder / f"{kind}-{n}{suffix}"
            maker(path)
            made[kind].append(path)
    return made


def measure_parsing(result: common.ScenarioResult, made: dict[str, list[Path]]) -> None:
    from documents.parsing import parse_file

    for kind, paths in made.items():
        size = sum(path.stat().st_size for path in paths)
        started = time.perf_counter()
        for path in paths:
            parse_file(path, name=path.name)
        seconds = time.perf_counter() - started
        result.add(
            f"{kind}_files_per_s",
            f"parse {kind}: files per second",
            round(len(paths) / seconds, 1),
            "files/s",
        )
        result.add(f"{kind}_mb_per_s", f"parse {kind}: MB per second", round(size / 1e6 / seconds, 2), "MB/s")


def measure_big_pdf(result: common.ScenarioResult, folder: Path) -> None:
    from documents.parsing import parse_file

    path = folder / "big.pdf"
    make_pdf(path, BIG_PDF_PAGES, random.Random(corpus.SEED))
    tracemalloc.start()
    parsed = parse_file(path, name=path.name)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    result.add(
        "big_pdf_file_mib",
        f"{BIG_PDF_PAGES}-page PDF: file size",
        round(path.stat().st_size / 2**20, 2),
        "MiB",
    )
    result.add(
        "big_pdf_text_mib", f"{BIG_PDF_PAGES}-page PDF: its text", round(len(parsed.text) / 2**20, 2), "MiB"
    )
    result.add(
        "big_pdf_peak_mib",
        f"{BIG_PDF_PAGES}-page PDF: Python heap peak while parsing",
        round(peak / 2**20, 2),
        "MiB",
        "a few times the text, not the file",
    )


def measure_resync(result: common.ScenarioResult, folder: Path, files: int) -> None:
    from documents.models import Source
    from queue_admin import file_sources, sources

    share = folder / "share"
    for n in range(files):
        sub = share / f"d{n // 1000}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"note-{n}.md").write_text(f"# Note {n}\n\nA short note, number {n}, about the backups.\n")
    Source.objects.filter(name="bench-share").delete()
    source = file_sources.attach("folder", [str(share)], name="bench-share")
    try:
        started = time.perf_counter()
        first = file_sources.run_sync(source)
        result.add("first_sync_s", f"first sync of {files:,} Markdown files (read, parse, write)",
                   round(time.perf_counter() - started, 2), "s")  # fmt: skip
        started = time.perf_counter()
        again = file_sources.run_sync(source)
        seconds = time.perf_counter() - started
        result.add(
            "resync_unchanged_s", f"re-sync of {files:,} unchanged files in a folder", round(seconds, 2), "s",
            f"≤ {RESYNC_TARGET_S:.0f} s", seconds <= RESYNC_TARGET_S,
        )  # fmt: skip
        if first.new != files or again.unchanged != files:
            result.notes.append(f"expected {files} new then unchanged, got {first.new} and {again.unchanged}")
    finally:
        sources.detach(Source.objects.get(pk=source.pk))


@contextmanager
def s3_server():
    """moto's S3 server on a free loopback port, with throwaway credentials in the environment
    (where Sidecar takes them from) while it runs."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server.start()
    saved = {
        name: os.environ.get(name)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="AKIABENCHSIDECAR0001",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


def measure_bucket_resync(result: common.ScenarioResult, files: int) -> None:
    """A bucket prefix of `files` Markdown objects: the first sync (one GET per object) and a
    re-sync with nothing changed (listing pages of 1,000 keys only, ETags compared)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    from documents.models import Source
    from queue_admin import file_sources, sources

    with s3_server() as endpoint_url:
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        backend.create_bucket("bench", "us-east-1")
        for n in range(files):  # into moto's store directly: over HTTP each PUT costs ~5 ms
            backend.put_object("bench", f"notes/d{n // 1000}/note-{n}.md",
                               f"# Note {n}\n\nA short note, number {n}, about the backups.\n".encode())  # fmt: skip
        Source.objects.filter(name="bench-bucket").delete()
        source = file_sources.attach(
            "s3", ["s3://bench/notes/"], name="bench-bucket", endpoint_url=endpoint_url
        )
        try:
            started = time.perf_counter()
            first = file_sources.run_sync(source)
            result.add("bucket_first_sync_s", f"first sync of {files:,} Markdown objects in a bucket (GET each)",
                       round(time.perf_counter() - started, 2), "s")  # fmt: skip
            started = time.perf_counter()
            again = file_sources.run_sync(source)
            seconds = time.perf_counter() - started
            result.add(
                "bucket_resync_unchanged_s", f"re-sync of {files:,} unchanged objects in a bucket", round(seconds, 2),
                "s", f"≤ {RESYNC_TARGET_S:.0f} s", seconds <= RESYNC_TARGET_S,
            )  # fmt: skip
            if first.new != files or again.unchanged != files:
                result.notes.append(
                    f"bucket: expected {files} new then unchanged, got {first.new} and {again.unchanged}"
                )
        finally:
            sources.detach(Source.objects.get(pk=source.pk))


def make_upload(path: Path, megabytes: int, rng: random.Random) -> None:
    """A zip of `megabytes` text files of UPLOAD_FILE_MB each, stored (not compressed), so the
    upload really is that size."""
    words = corpus.WORDS
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for n in range(megabytes // UPLOAD_FILE_MB):
            with archive.open(f"letters/letter-{n:03d}.txt", "w") as entry:
                written = 0
                while written < UPLOAD_FILE_MB * 2**20:
                    line = (" ".join(rng.choices(words, k=16)) + ".\n").encode()
                    entry.write(line)
                    written += len(line)


def measure_upload(result: common.ScenarioResult, folder: Path, megabytes: int) -> None:
    """Upload a zip of `megabytes` MB as the shell's `source upload` does, and sync it: the
    Python heap's peak across both, next to the upload's size."""
    from django.test import override_settings

    from documents.models import Source
    from queue_admin import file_sources, sources

    archive = folder / "upload.zip"
    make_upload(archive, megabytes, random.Random(corpus.SEED))
    with override_settings(SOURCE_UPLOAD_DIR=folder / "uploads", SOURCE_UPLOAD_MAX_MB=megabytes + 10):
        Source.objects.filter(name="bench-uploads").delete()
        source = file_sources.attach("uploads", [], name="bench-uploads")
        try:
            tracemalloc.start()
            started = time.perf_counter()
            file_sources.upload_files(source, [archive])
            report = file_sources.run_sync(source)
            seconds = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            size = archive.stat().st_size
            result.add("upload_mb", "upload: a zip of text files", round(size / 2**20, 1), "MiB")
            result.add("upload_seconds", "upload: take in, parse and write every file (traced)",
                       round(seconds, 1), "s")  # fmt: skip
            result.add(
                "upload_peak_mib", "upload: Python heap peak while taking it in and syncing", round(peak / 2**20, 1),
                "MiB", "flat: a few files' text, not the upload", peak < max(32 * 2**20, size / 4),
            )  # fmt: skip
            expected = megabytes // UPLOAD_FILE_MB
            if report.new != expected or report.failed:
                result.notes.append(f"upload: expected {expected} new files, got {report.summary()}")
        finally:
            sources.detach(Source.objects.get(pk=source.pk))


def run(*, size: int | None, quick: bool, corpus_name: str, words_per_doc: int) -> common.ScenarioResult:
    files = size or (QUICK_FILES if quick else DEFAULT_FILES)
    resync_files = QUICK_RESYNC_FILES if quick else DEFAULT_RESYNC_FILES
    upload_mb = QUICK_UPLOAD_MB if quick else UPLOAD_MB
    result = common.ScenarioResult(
        "files",
        f"generated per format: {files} PDFs of 1-50 pages, HTML, Markdown and DOCX files (seed {corpus.SEED}); "
        "--corpus and --words do not apply",
        {
            "files_per_format": files,
            "resync_files": resync_files,
            "big_pdf_pages": BIG_PDF_PAGES,
            "upload_mb": upload_mb,
        },
    )
    common.empty_tables()
    with tempfile.TemporaryDirectory(prefix="sidecar-bench-files-") as tmp:
        folder = Path(tmp)
        measure_parsing(result, make_corpus(folder, files))
        measure_big_pdf(result, folder)
        measure_resync(result, folder, resync_files)
        measure_bucket_resync(result, resync_files)
        measure_upload(result, folder, upload_mb)
    common.empty_tables()
    return result
