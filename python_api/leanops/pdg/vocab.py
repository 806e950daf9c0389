"""Sub-word vocabulary over a ``tokenizers`` tokenizer, with the per-example extended vocabulary of the
copy mechanism.

Any ``tokenizers.Tokenizer`` (or a ``transformers`` fast tokenizer: its ``backend_tokenizer``) works;
``PieceVocab.train`` fits a small BPE on the training texts (whitespace pre-split, ``##`` marks a piece
that continues a word, unknown characters fused into one ``[UNK]`` piece). A source piece that is
``[UNK]`` gets an extended id ``V + j`` of its example (j in order of first appearance, keyed by its
surface text); a target piece that is ``[UNK]`` with the same surface gets the same id, so the decoder can
copy it. Pieces of an unseen word that *are* in the vocabulary are copied as ordinary ids.
"""
from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIALS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "[SEP]"]
PREFIX = "##"


class PieceVocab:
    def __init__(self, tokenizer):
        if hasattr(tokenizer, "backend_tokenizer"):  # transformers fast tokenizer
            tokenizer = tokenizer.backend_tokenizer
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer must be a tokenizers.Tokenizer or a transformers fast tokenizer, "
                            f"got {type(tokenizer).__name__}")
        tokenizer.add_special_tokens([s for s in SPECIALS if tokenizer.token_to_id(s) is None])
        self.tokenizer = tokenizer
        self.size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.pad, self.unk, self.bos, self.eos, self.sep = (tokenizer.token_to_id(s) for s in SPECIALS)
        self._pieces = [tokenizer.id_to_token(i) for i in range(self.size)]

    @classmethod
    def train(cls, texts, vocab_size: int = 600, min_frequency: int = 2) -> "PieceVocab":
        if vocab_size < len(SPECIALS) + 1:
            raise ValueError(f"vocab_size must be > {len(SPECIALS)}, got {vocab_size}")
        tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix=PREFIX, fuse_unk=True))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tok.decoder = decoders.WordPiece(prefix=PREFIX)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIALS,
                                      continuing_subword_prefix=PREFIX, show_progress=False)
        tok.train_from_iterator(list(texts), trainer)
        return cls(tok)

    def pieces(self, text: str) -> list:
        """``[(id, surface, continues_word)]`` of one text; ``surface`` is the text an id stands for."""
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        out = []
        for i, (tid, (a, b), w) in enumerate(zip(enc.ids, enc.offsets, enc.word_ids)):
            cont = i > 0 and w is not None and w == enc.word_ids[i - 1]
            out.append((tid, text[a:b], cont))
        return out

    def extend(self, pieces, ext_words: list) -> list:
        """Extended ids of source pieces; appends every new ``[UNK]`` surface to ``ext_words``."""
        ids = []
        for tid, surface, cont in pieces:
            if tid == self.unk:
                key = (surface, cont)
                if key not in ext_words:
                    ext_words.append(key)
                tid = self.size + ext_words.index(key)
            ids.append(tid)
        return ids

    def target_ids(self, pieces, ext_words: list) -> list:
        """Extended ids of target pieces: an ``[UNK]`` found among the source's unknown words gets its id."""
        ids = []
        for tid, surface, cont in pieces:
            if tid == self.unk and (surface, cont) in ext_words:
                tid = self.size + ext_words.index((surface, cont))
            ids.append(tid)
        return ids

    def decode(self, ids, ext_words=()) -> str:
        """Extended ids -> text (stops at ``[EOS]``, skips other specials)."""
        words = []
        for tid in ids:
            tid = int(tid)
            if tid == self.eos:
                break
            if tid < self.size:
                if tid in (self.pad, self.bos, self.sep):
                    continue
                piece = self._pieces[tid]
                cont = piece.startswith(PREFIX)
                piece = piece[len(PREFIX):] if cont else piece
            else:
                j = tid - self.size
                if j >= len(ext_words):
                    raise ValueError(f"extended id {tid} has no source word (example has {len(ext_words)})")
                piece, cont = ext_words[j]
            if cont and words:
                words[-1] += piece
            else:
                words.append(piece)
        return " ".join(words)
