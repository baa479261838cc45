"""Uploaded zips, made at test time with zipfile: safe members extract, unsafe entries and zip
bombs are refused, and nothing is ever written anywhere but the file the caller gives."""

import io
import os
import struct
import zipfile
import zlib

import pytest

from documents.sources.archives import (
    ArchiveError,
    ArchiveLimits,
    Member,
    Refused,
    extract_member,
    members,
)

MB = 1024 * 1024
DEFAULTS = ArchiveLimits()


def make_zip(path, entries, compression=zipfile.ZIP_DEFLATED):
    """A zip at `path` of `entries`: name (or ZipInfo) -> bytes; a name ending in '/' is a folder."""
    with zipfile.ZipFile(path, "w", compression) as zip_file:
        for name, data in entries.items():
            zip_file.writestr(name, data)
    return path


def extracted(path, member, limits=DEFAULTS) -> bytes:
    dest = io.BytesIO()
    written = extract_member(path, member, dest, limits=limits)
    assert written == len(dest.getvalue())
    return dest.getvalue()


def set_declared(path, name: str, *, size: int, crc: int | None = None) -> None:
    """Rewrite what the central directory declares about entry `name`, as a forger would."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while data[at + 46 : at + 46 + struct.unpack_from("<H", data, at + 28)[0]] != name.encode():
        at = data.find(b"PK\x01\x02", at + 4)
    struct.pack_into("<I", data, at + 24, size)
    if crc is not None:
        struct.pack_into("<I", data, at + 16, crc)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory):
    """One entry of 200 MB of zeros, about 200 KB compressed; written a megabyte at a time so
    the test never holds 200 MB."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zip_file:
        with zip_file.open("zeros.bin", "w", force_zip64=True) as entry:
            zeros = bytes(MB)
            for _ in range(200):
                entry.write(zeros)
    return path


# --- What extracts -----------------------------------------------------------------------------


def test_the_files_of_a_zip_with_nested_folders_are_its_members(tmp_path):
    files = {
        "manuals/install.txt": b"Install it.",
        "manuals/en/guide.md": b"# Guide\n" * 100,
        "readme.txt": b"Read me.",
        "empty.txt": b"",
    }
    path = make_zip(tmp_path / "docs.zip", {"manuals/": b"", "manuals/en/": b"", **files})

    found, refused = members(path, DEFAULTS)

    assert refused == []
    assert [(m.name, m.size) for m in found] == [(name, len(data)) for name, data in files.items()]
    assert {m.name: extracted(path, m) for m in found} == files


def test_windows_separators_become_slashes(tmp_path):
    path = make_zip(tmp_path / "win.zip", {"manuals\\install.txt": b"Install it."})

    [member], refused = members(path, DEFAULTS)

    assert (member.name, refused) == ("manuals/install.txt", [])
    assert extracted(path, member) == b"Install it."


def test_an_open_zip_file_serves_many_extractions(tmp_path):
    path = make_zip(tmp_path / "many.zip", {f"page-{i}.txt": f"page {i}".encode() for i in range(50)})
    with zipfile.ZipFile(path) as zip_file:
        found, _ = members(zip_file, DEFAULTS)
        assert [extracted(zip_file, m) for m in found] == [f"page {i}".encode() for i in range(50)]


def test_the_last_of_two_entries_with_one_name_wins(tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        path = make_zip(tmp_path / "twice.zip", {"a.txt": b"first"} | {zipfile.ZipInfo("a.txt"): b"second"})

    [member], refused = members(path, DEFAULTS)

    assert extracted(path, member) == b"second"
    assert refused == [Refused("a.txt", "replaced by a later entry of the same name")]


# --- Entries refused one by one ------------------------------------------------------------


def test_entries_that_lead_outside_are_refused_and_nothing_is_written_anywhere(tmp_path, monkeypatch):
    path = make_zip(
        tmp_path / "evil.zip",
        {
            "../evil.txt": b"evil",
            "/abs.txt": b"abs",
            "..\\win.txt": b"win",
            "a/../../b.txt": b"b",
            "C:\\windows\\x.txt": b"x",
            "ok/fine.txt": b"fine",
            "./ok/dot.txt": b"dot",
        },
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # where a careless extractor would write relative paths

    found, refused = members(path, DEFAULTS)

    assert [(m.name, m.entry) for m in found] == [("ok/fine.txt", ""), ("ok/dot.txt", "./ok/dot.txt")]
    assert refused == [
        Refused("../evil.txt", "unsafe path: leads outside the archive ('../evil.txt')"),
        Refused("/abs.txt", "absolute path"),
        Refused("..\\win.txt", "unsafe path: leads outside the archive ('..\\win.txt')"),
        Refused("a/../../b.txt", "unsafe path: leads outside the archive ('a/../../b.txt')"),
        Refused("C:\\windows\\x.txt", "absolute path (a drive letter)"),
    ]
    # Even the refused entries, asked for by their raw names: the bytes go to the file given, only.
    raw_names = [m.entry or m.name for m in found] + [r.name for r in refused]
    contents = [extracted(path, Member(name=raw, size=0, entry=raw)) for raw in raw_names]
    assert contents == [b"fine", b"dot", b"evil", b"abs", b"win", b"b", b"x"]
    assert sorted(os.listdir(tmp_path)) == ["evil.zip", "work"]
    assert os.listdir(workdir) == []
    assert not (tmp_path.parent / "evil.txt").exists() and not os.path.exists("/abs.txt")


def test_a_symbolic_link_is_refused(tmp_path):
    link = zipfile.ZipInfo("docs/passwd")
    link.create_system = 3  # unix
    link.external_attr = 0o120777 << 16
    path = make_zip(tmp_path / "link.zip", {link: b"/etc/passwd", "docs/real.txt": b"real"})

    found, refused = members(path, DEFAULTS)

    assert [m.name for m in found] == ["docs/real.txt"]
    assert refused == [Refused("docs/passwd", "a symbolic link")]


def test_an_encrypted_entry_is_refused(tmp_path):
    path = tmp_path / "locked.zip"
    with zipfile.ZipFile(path, "w") as zip_file:
        zip_file.writestr("secret.txt", b"scrambled")
        zip_file.writestr("open.txt", b"open")
        zip_file.getinfo("secret.txt").flag_bits |= 0x1  # as written to the central directory

    found, refused = members(path, DEFAULTS)

    assert [m.name for m in found] == ["open.txt"]
    assert refused == [Refused("secret.txt", "encrypted entry")]


def test_an_entry_over_the_size_limit_or_the_ratio_is_refused_alone(tmp_path):
    noise = os.urandom(3 * MB)  # does not compress: keeps the overall ratio low
    path = make_zip(
        tmp_path / "mixed.zip", {"noise.bin": noise, "zeros.bin": bytes(2 * MB), "small.txt": b"ok"}
    )

    found, refused = members(path, ArchiveLimits(max_entry_bytes=2 * MB + 1))

    assert [m.name for m in found] == ["small.txt"]
    assert refused[0] == Refused("noise.bin", "too large: 3 MB, over the 2 MB limit for one file")
    assert refused[1].name == "zeros.bin"
    assert refused[1].reason.startswith("expands ") and refused[1].reason.endswith(
        " times, over the limit of 100 times (a zip bomb?)"
    )


def test_small_files_that_compress_well_are_not_taken_for_bombs(tmp_path):
    path = make_zip(tmp_path / "spaces.zip", {"blank.txt": b" " * 500_000})
    [member], refused = members(path, DEFAULTS)
    assert refused == [] and member.size == 500_000


# --- Whole archives refused ----------------------------------------------------------------


def test_a_zip_bomb_is_refused_before_anything_is_extracted(zip_bomb):
    with pytest.raises(ArchiveError) as by_size:
        members(zip_bomb, ArchiveLimits(max_total_bytes=50 * MB))
    assert str(by_size.value) == "refused: the zip would expand to 200 MB, over the 50 MB limit (a zip bomb?)"

    with pytest.raises(ArchiveError) as by_ratio:
        members(zip_bomb, DEFAULTS)
    assert str(by_ratio.value).startswith("refused: the zip would expand ")
    assert str(by_ratio.value).endswith(" KB to 200 MB), over the limit of 100 times (a zip bomb?)")


def test_a_header_that_understates_the_size_cannot_make_extraction_write_more(tmp_path):
    text = b"All work and no play makes a dull manual. " * 50_000  # 2 MB
    path = make_zip(tmp_path / "forged.zip", {"big.txt": text})
    set_declared(path, "big.txt", size=1000)
    [member], _ = members(path, DEFAULTS)
    assert member.size == 1000  # the lie passes every check made from the directory
    dest = io.BytesIO()

    with pytest.raises(ArchiveError) as refused:
        extract_member(path, member, dest, limits=DEFAULTS)

    assert (
        str(refused.value)
        == "refused: 'big.txt' is damaged or its header is forged (Bad CRC-32 for file 'big.txt')"
    )
    assert len(dest.getvalue()) <= 1000

    # With the checksum forged too, zipfile still stops at the declared size.
    set_declared(path, "big.txt", size=1000, crc=zlib.crc32(text[:1000]))
    assert extracted(path, member) == text[:1000]


def test_extraction_stops_at_the_limit_for_one_file(tmp_path):
    path = make_zip(tmp_path / "big.zip", {"big.bin": os.urandom(3 * MB)})
    [member], _ = members(path, DEFAULTS)
    dest = io.BytesIO()

    with pytest.raises(ArchiveError) as refused:
        extract_member(path, member, dest, limits=ArchiveLimits(max_entry_bytes=2 * MB))

    assert str(refused.value) == "refused: 'big.bin' expands past the 2 MB limit for one file"
    assert len(dest.getvalue()) <= 2 * MB


def test_too_many_entries(tmp_path):
    path = make_zip(tmp_path / "crowd.zip", {f"{i}.txt": b"" for i in range(6)})
    with pytest.raises(ArchiveError) as refused:
        members(path, ArchiveLimits(max_entries=5))
    assert str(refused.value) == "refused: the zip has 6 entries, over the 5 limit"


def test_a_file_that_is_not_a_zip(tmp_path):
    text = tmp_path / "notes.zip"
    text.write_text("just some notes")
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(make_zip(tmp_path / "whole.zip", {"a.txt": b"a" * 1000}).read_bytes()[:-30])

    for path in (text, truncated):
        with pytest.raises(ArchiveError) as refused:
            members(path, DEFAULTS)
        assert str(refused.value) == "refused: not a zip file, or a damaged one"
