"""Type stubs of the compiled extension ``galrec._core`` (Rust, PyO3)."""

import numpy as np
import numpy.typing as npt

__version__: str

def build_info() -> dict[str, str]:
    """Version, build profile ("release" or "debug"), target architecture and OS."""

# --- galrec.prompts (rust/galrec-py/src/prompts.rs) ---

class PromptTokenizer:
    """A Hugging Face tokenizer.json loaded in Rust; encodes segments without special tokens."""

    @staticmethod
    def from_file(path: str, *, pad_token_id: int | None = None) -> PromptTokenizer: ...
    @property
    def vocab_size(self) -> int:
        """One more than the largest vocabulary id (added tokens included): ID tokens start here."""
    @property
    def pad_token_id(self) -> int | None: ...
    @property
    def special_prefix(self) -> list[int]:
        """Special tokens the post-processor puts before a single sequence."""
    @property
    def special_suffix(self) -> list[int]:
        """Special tokens the post-processor puts after a single sequence."""
    @property
    def source(self) -> str: ...
    @property
    def fingerprint(self) -> int:
        """A hash of the tokenizer.json bytes, recorded in text stores."""
    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` alone: no special tokens, no truncation."""
    def decode(self, ids: list[int]) -> str: ...

class TextStore:
    """Node texts with their title segments tokenised once."""

    @staticmethod
    def build(
        tokenizer: PromptTokenizer,
        item_texts: list[str],
        *,
        num_users: int,
        user_texts: list[str] | None = None,
        title_format: str = ' "{title}"',
    ) -> TextStore: ...
    @staticmethod
    def open(path: str, tokenizer: PromptTokenizer) -> TextStore: ...
    def save(self, path: str) -> None: ...
    @property
    def num_users(self) -> int: ...
    @property
    def num_items(self) -> int: ...
    @property
    def has_user_texts(self) -> bool: ...
    @property
    def title_format(self) -> str: ...
    def tokens(self, side: str, id: int) -> list[int] | None:
        """Title-segment ids of a node (None when its side has no texts)."""
    def segment_text(self, side: str, id: int) -> str | None:
        """The title-segment text of a node, as tokenised (None when its side has no texts)."""

class PromptAssembler:
    """The Rust assembler behind ``galrec.prompts.PromptAssembler``."""

    def __init__(
        self,
        tokenizer: PromptTokenizer,
        store: TextStore,
        *,
        user_templates: tuple[str, str, str],
        item_templates: tuple[str, str, str],
        neighbor: str,
        separator: str,
        closing: str,
        max_length: int = 256,
        padding_side: str = "right",
        pad_to_max_length: bool = False,
        dedupe: bool = True,
        threads: int | None = None,
    ) -> None: ...
    @property
    def max_length(self) -> int: ...
    def assemble(
        self,
        side: str,
        hop: int,
        seeds: npt.NDArray[np.int64],
        offsets: list[npt.NDArray[np.int64]],
        nodes: list[npt.NDArray[np.uint32]],
    ) -> tuple[
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
    ]:
        """(input_ids, attention_mask, node_ids, pool_index) of the hop-``hop`` prompts."""
    def render_segments(
        self,
        side: str,
        hop: int,
        seeds: npt.NDArray[np.int64],
        offsets: list[npt.NDArray[np.int64]],
        nodes: list[npt.NDArray[np.uint32]],
    ) -> list[list[str]]: ...
