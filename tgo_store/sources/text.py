"""``text:pydoc`` and ``text:URL``: a corpus tokenised with the model's tokenizer into sequences.

Corpora: ``text:pydoc`` (the topics of Python's own documentation, ``pydoc_data.topics``,
bundled with every Python), or at any fsspec URL a ``.txt`` file, a ``.jsonl`` file with a
``text`` field per line, or a folder of ``.txt`` files. A document is a pydoc topic, a file or
a JSON line.

Sequences of ``seq_len`` tokens, each framed by the tokenizer's own special tokens
(``[CLS] ... [SEP]`` for BERT, BOS for LLaMA-style tokenizers when it adds one):
- packing (default): documents are joined with the EOS (or SEP) token and cut into full
  sequences; the tail that does not fill one is dropped; no padding;
- padding ``left`` / ``right``: one document per sequence, truncated to ``seq_len``.
The order is fixed: sequence i is the same on every run; ``samples`` keeps a seeded subset,
sorted. The source is opened after the model, with its tokenizer, in ``SourceOptions``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import fsspec
import numpy as np

from tgo_store.errors import TgoError
from tgo_store.sources.base import SourceOptions
from tgo_store.sources.tokens import TokenSequences, tokenizer_attrs

PREFIX = "text:"
PYDOC = "pydoc"
TEXT_FIELD = "text"
DEFAULT_SEQ_LEN = 128
PADDING_SIDES = ("left", "right")


_WARNED: set[tuple[str, int]] = set()  # (corpus, count) warned about in this process: one line, not one per read


def decode_utf8(chunks: list[bytes], corpus: str) -> list[str]:
    """Decode a corpus's files; invalid UTF-8 becomes U+FFFD (as before) with one stderr warning and its count."""
    texts = [chunk.decode("utf-8", errors="replace") for chunk in chunks]
    bad = sum(len(text) - len(chunk.decode("utf-8", errors="ignore")) for text, chunk in zip(texts, chunks, strict=True))
    if bad and (corpus, bad) not in _WARNED:
        _WARNED.add((corpus, bad))
        print(f"warning: text corpus {corpus} holds {bad} invalid UTF-8 sequence(s), read as U+FFFD; "
              "re-encode the files as UTF-8 to keep those characters", file=sys.stderr)
    return texts


def read_documents(corpus: str) -> list[str]:
    """The documents of a corpus, in a fixed order."""
    if corpus == PYDOC:
        from pydoc_data.topics import topics

        return [topics[k] for k in sorted(topics)]
    fs, root = fsspec.core.url_to_fs(corpus)
    if fs.isdir(root):
        files = sorted(p for p in fs.find(root) if p.lower().endswith(".txt"))
        if not files:
            raise TgoError(f"text folder {corpus} holds no .txt files; point text: at .txt, .jsonl or a folder of .txt")
        return decode_utf8([fs.cat_file(p) for p in files], corpus)
    if not fs.exists(root):
        raise TgoError(f"text corpus {corpus} does not exist; use text:pydoc or text:URL of a .txt/.jsonl/folder")
    raw = decode_utf8([fs.cat_file(root)], corpus)[0]
    if root.lower().endswith(".jsonl"):
        return _jsonl_documents(raw, corpus)
    return [raw]


def _jsonl_documents(raw: str, corpus: str) -> list[str]:
    docs = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TgoError(f"{corpus} line {number} is not JSON ({exc.msg}); write one JSON object per line") from exc
        if not isinstance(record, dict) or not isinstance(record.get(TEXT_FIELD), str):
            raise TgoError(f"{corpus} line {number} has no string '{TEXT_FIELD}' field; "
                           f"write one {{\"{TEXT_FIELD}\": ...}} object per line")
        docs.append(record[TEXT_FIELD])
    return docs


def special_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text ([CLS] / [SEP], BOS, none)."""
    probe = "the"
    bare = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    framed = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    for start in range(len(framed) - len(bare) + 1):
        if framed[start:start + len(bare)] == bare:
            return framed[:start], framed[start + len(bare):]
    return [], []


class TextSource(TokenSequences):
    """Token sequences of one corpus; see the module docstring."""

    def __init__(self, spec: str, options: SourceOptions):
        tok = options.tokenizer
        if tok is None:
            raise TgoError(f"--data {spec} needs a model with a tokenizer; use --model hf:PATH (a folder with "
                           "tokenizer files or a .gguf)")
        seq_len = int(options.seq_len or min(DEFAULT_SEQ_LEN, options.max_length or DEFAULT_SEQ_LEN))
        if options.max_length is not None and seq_len > options.max_length:
            raise TgoError(f"--seq-len {seq_len} is above the model's maximum of {options.max_length} positions; "
                           f"use --seq-len {options.max_length} or less")
        self._prefix, self._suffix = special_frame(tok)
        n_special = len(self._prefix) + len(self._suffix)
        if seq_len <= n_special:
            raise TgoError(f"--seq-len {seq_len} leaves no room next to the {n_special} special tokens; use a longer one")
        if options.padding not in (None, *PADDING_SIDES):
            raise TgoError(f"unknown --padding {options.padding}; use left or right (or leave it out to pack)")
        if options.vocab_size is not None and len(tok) > options.vocab_size:
            raise TgoError(f"the tokenizer has {len(tok)} tokens but the model's embedding has {options.vocab_size} "
                           "rows; use the tokenizer saved with this model")
        self.corpus = spec[len(PREFIX):]
        self.tokenizer, self.seq_len, self.padding = tok, seq_len, options.padding
        documents = [d for d in read_documents(self.corpus) if d.strip()]  # blank documents hold no text
        corpus_hash = hashlib.sha256("\x1e".join(documents).encode()).hexdigest()
        encoded = [tok(d, add_special_tokens=False, verbose=False)["input_ids"] for d in documents]
        if not any(encoded):
            raise TgoError(f"text corpus {self.corpus} gives no tokens after tokenisation; point text: at non-empty text")
        ids, mask = (self._pack(encoded, n_special) if self.padding is None else self._pad(encoded, n_special))
        if len(ids) == 0:
            raise TgoError(f"text corpus {self.corpus} has fewer tokens than one sequence of {seq_len}; "
                           "use a shorter --seq-len or more text")
        keep = np.arange(len(ids))
        if options.samples is not None and options.samples < len(ids):
            keep = np.sort(np.random.default_rng(options.seed).permutation(len(ids))[:options.samples])
        special_ids = np.asarray(sorted(set(tok.all_special_ids)), np.int64)
        text_attrs = {"seq_len": seq_len, "packing": self.padding is None, "padding_side": self.padding or "none",
                      "corpus": self.corpus, "corpus_sha256": corpus_hash, "sequences": len(keep),
                      "sequences_in_corpus": len(ids), "seed": int(options.seed)}
        super().__init__(spec, ids[keep], mask[keep], np.isin(ids[keep], special_ids), keep,
                         np.full(len(keep), -1, np.int64), len(tok), tokenizer_attrs(tok), text_attrs)

    def _frame(self, content: list[int]) -> list[int]:
        return [*self._prefix, *content, *self._suffix]

    def _pack(self, encoded: list[list[int]], n_special: int) -> tuple[np.ndarray, np.ndarray]:
        tok = self.tokenizer
        sep = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        stream: list[int] = []
        for doc in encoded:
            if doc:
                stream += doc + ([sep] if sep is not None else [])
        width = self.seq_len - n_special
        rows = [self._frame(stream[i:i + width]) for i in range(0, len(stream) - width + 1, width)]
        ids = np.asarray(rows, np.int64).reshape(len(rows), self.seq_len)
        return ids, np.ones(ids.shape, bool)

    def _pad(self, encoded: list[list[int]], n_special: int) -> tuple[np.ndarray, np.ndarray]:
        pad = self.tokenizer.pad_token_id
        pad = 0 if pad is None else int(pad)
        docs = [self._frame(d[: self.seq_len - n_special]) for d in encoded if d]
        ids = np.full((len(docs), self.seq_len), pad, np.int64)
        mask = np.zeros(ids.shape, bool)
        for row, doc in enumerate(docs):
            cols = slice(0, len(doc)) if self.padding == "right" else slice(self.seq_len - len(doc), self.seq_len)
            ids[row, cols], mask[row, cols] = doc, True
        return ids, mask


class TextEntry:
    name = "text"

    def can_open(self, spec: str) -> bool:
        return spec.startswith(PREFIX)

    def open(self, spec: str, options: SourceOptions) -> TextSource:
        return TextSource(spec, options)
