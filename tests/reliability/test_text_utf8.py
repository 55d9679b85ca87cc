"""Invalid UTF-8 in a text corpus (issue 30): still read as U+FFFD, now with one warning line
that counts the invalid sequences (it was dropped silently)."""

from __future__ import annotations

from tgo_store.sources.text import read_documents


def test_invalid_utf8_warns_once_with_its_count(tmp_path, capsys) -> None:
    good = "naïve café ✓ \ufffd kept"  # a genuine U+FFFD is not counted
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_bytes(good.encode() + b" \xff\xfe bad " + b"\xc3")  # two invalid sequences + a cut one
    (folder / "b.txt").write_bytes(good.encode())
    docs = read_documents(str(folder))
    assert docs == [good + " \ufffd\ufffd bad \ufffd", good]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds 3 invalid UTF-8 sequence(s)" in err[0] and str(folder) in err[0], err
    read_documents(str(folder))
    assert capsys.readouterr().err == ""  # once per corpus and count in a process, not once per read


def test_valid_utf8_says_nothing(tmp_path, capsys) -> None:
    path = tmp_path / "ok.txt"
    path.write_text("plain text ✓", encoding="utf-8")
    assert read_documents(str(path)) == ["plain text ✓"]
    assert capsys.readouterr().err == ""
