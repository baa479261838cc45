"""Uploaded .zip files, read safely: which entries may become documents, and each one's bytes.

A zip is untrusted input. Everything is decided from its central directory before a byte is
decompressed: too many entries, or a declared size or compression ratio that only a zip bomb
has, refuse the whole archive; an entry whose name leads outside the archive (`../x`, `/x`,
`C:\\x`), a symbolic link or an encrypted entry is refused on its own. Nothing here writes to a
path: extract_member streams into a file object the caller gives, counting, so a header that
lies about the size cannot make it write more than the header said.
"""

import lzma
import re
import stat
import zipfile
import zlib
from contextlib import nullcontext
from dataclasses import dataclass

from documents.sources.sizes import readable_size

CHUNK_BYTES = 1024 * 1024
SUPPORTED_COMPRESSION = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
DRIVE_LETTER = re.compile(r"[A-Za-z]:")
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


class ArchiveError(Exception):
    """The whole archive is refused; str(e) is the plain reason for the operator."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_total_bytes: int = 500 * 1024 * 1024  # sum of the declared uncompressed sizes
    max_ratio: int = 100  # uncompressed / compressed, per entry and overall
    max_entries: int = 10_000
    max_entry_bytes: int = 100 * 1024 * 1024
    # Below this a high ratio is harmless (a page of spaces compresses 500 times); bombs are big.
    ratio_applies_from_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class Member:
    name: str  # the safe relative path inside the zip, '/'-separated, e.g. "manuals/install.pdf"
    size: int  # as declared in the zip
    entry: str = ""  # the name as stored in the zip, when it differs (e.g. "manuals\\install.pdf")


@dataclass(frozen=True)
class Refused:
    name: str  # the entry name as it appears in the zip
    reason: str


def members(archive, limits: ArchiveLimits) -> tuple[list[Member], list[Refused]]:
    """The safe members of the zip `archive` (a path, a binary file, or an open ZipFile) in the
    order of the zip, and the entries refused with their reason; directories are neither.
    ArchiveError when the whole archive is refused. When two entries have the same name the
    last one wins, as with unzip; the earlier ones are listed as refused."""
    with _opened(archive) as zip_file:
        entries = zip_file.infolist()
        _check_whole(entries, limits)
        safe: dict[str, Member] = {}
        refused: list[Refused] = []
        for info in entries:
            if info.filename.replace("\\", "/").endswith("/"):
                continue  # a directory: nothing to extract
            name, reason = _safe_name(info.filename)
            reason = reason or _entry_refusal(info, limits)
            if reason:
                refused.append(Refused(info.filename, reason))
                continue
            if name in safe:
                earlier = safe.pop(name)
                refused.append(
                    Refused(earlier.entry or earlier.name, "replaced by a later entry of the same name")
                )
            safe[name] = Member(
                name=name, size=info.file_size, entry=info.filename if info.filename != name else ""
            )
        return list(safe.values()), refused


def extract_member(archive, member: Member, dest, *, limits: ArchiveLimits) -> int:
    """Stream `member` of the zip `archive` (a path, a binary file, or an open ZipFile: pass one
    to extract many members without reading the directory each time) into the binary file
    `dest`; the number of bytes written. ArchiveError, with `dest` holding part of the member,
    when it is damaged or expands past its declared size or `max_entry_bytes`."""
    with _opened(archive) as zip_file:
        try:
            info = zip_file.getinfo(member.entry or member.name)
        except KeyError:
            raise ArchiveError(f"refused: '{member.name}' is not in the archive") from None
        limit = min(info.file_size, limits.max_entry_bytes)
        written = 0
        for chunk in _chunks(zip_file, info, member.name):
            written += len(chunk)
            if written > limit:
                raise ArchiveError(f"refused: '{member.name}' expands past {_limit_words(info, limits)}")
            dest.write(chunk)
        return written


def _chunks(zip_file: zipfile.ZipFile, info: zipfile.ZipInfo, name: str):
    """The member's bytes, a chunk at a time; errors of the zip (not of the caller's file) as
    ArchiveError."""
    try:
        with zip_file.open(info) as source:
            while chunk := source.read(CHUNK_BYTES):
                yield chunk
    # zipfile stops reading at the declared size, then finds that the CRC-32 does not match: a
    # damaged entry, or a header that lies about the size.
    except (
        zipfile.BadZipFile,
        EOFError,
        OSError,
        zlib.error,
        lzma.LZMAError,
        NotImplementedError,
        RuntimeError,
    ) as error:
        raise ArchiveError(f"refused: '{name}' is damaged or its header is forged ({error})") from None


def _opened(archive):
    if isinstance(archive, zipfile.ZipFile):
        return nullcontext(archive)  # the caller's to close
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, EOFError, ValueError):
        raise ArchiveError("refused: not a zip file, or a damaged one") from None


def _check_whole(entries: list[zipfile.ZipInfo], limits: ArchiveLimits) -> None:
    if len(entries) > limits.max_entries:
        raise ArchiveError(
            f"refused: the zip has {len(entries):,} entries, over the {limits.max_entries:,} limit"
        )
    files = [info for info in entries if not info.is_dir()]
    total = sum(info.file_size for info in files)
    if total > limits.max_total_bytes:
        raise ArchiveError(
            f"refused: the zip would expand to {readable_size(total)}, over the "
            f"{readable_size(limits.max_total_bytes)} limit (a zip bomb?)"
        )
    compressed = max(sum(info.compress_size for info in files), 1)
    if total >= limits.ratio_applies_from_bytes and total > limits.max_ratio * compressed:
        raise ArchiveError(
            f"refused: the zip would expand {total // compressed:,} times ({readable_size(compressed)} "
            f"to {readable_size(total)}), over the limit of {limits.max_ratio} times (a zip bomb?)"
        )


def _safe_name(raw: str) -> tuple[str, str]:
    """`raw` as a '/'-separated relative path, and the reason it is unsafe ("" if it is not).
    Backslashes count as separators: Windows tools write them, and `..\\x` must not slip by."""
    name = raw.replace("\\", "/")
    if CONTROL_CHARACTER.search(name):
        return "", "a control character in the name"
    if name.startswith("/"):
        return "", "absolute path"
    if DRIVE_LETTER.match(name):
        return "", "absolute path (a drive letter)"
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        return "", f"unsafe path: leads outside the archive ('{raw}')"
    if not parts:
        return "", "an empty name"
    return "/".join(parts), ""


def _entry_refusal(info: zipfile.ZipInfo, limits: ArchiveLimits) -> str:
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    if info.flag_bits & 0x1:
        return "encrypted entry"
    if info.compress_type not in SUPPORTED_COMPRESSION:
        return f"compressed with an unsupported method ({info.compress_type})"
    if info.file_size > limits.max_entry_bytes:
        return (
            f"too large: {readable_size(info.file_size)}, over the "
            f"{readable_size(limits.max_entry_bytes)} limit for one file"
        )
    compressed = max(info.compress_size, 1)
    if info.file_size >= limits.ratio_applies_from_bytes and info.file_size > limits.max_ratio * compressed:
        return (
            f"expands {info.file_size // compressed:,} times, over the limit of "
            f"{limits.max_ratio} times (a zip bomb?)"
        )
    return ""


def _limit_words(info: zipfile.ZipInfo, limits: ArchiveLimits) -> str:
    if info.file_size <= limits.max_entry_bytes:
        return f"its declared size of {readable_size(info.file_size)} (a forged header?)"
    return f"the {readable_size(limits.max_entry_bytes)} limit for one file"
