"""Random-init causal LMs with a tokenizer trained on the data, built offline in seconds.

Used where a model must start from nothing: the ``tiny`` and ``synthetic`` bench presets and the
test fixtures. The tokenizer is a byte-level BPE trained on the given texts (every byte stays
representable, so unseen text still tokenizes) with digits split one per token, so arithmetic
is learnable; it carries a ChatML chat template without a system prompt. The model is a
``LlamaForCausalLM`` with tied embeddings. Both are written as an ordinary model folder
(safetensors + tokenizer files) that ``proxysel.models.loader.load_causal_lm`` reads.

>>> tok = build_tokenizer(["What is 2+2? 4"], vocab_size=300)            # doctest: +SKIP
>>> build_llama(tok, "models/target", hidden=256, layers=8, seed=0)      # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIAL_TOKENS = ("<|pad|>", "<|im_start|>", "<|im_end|>")


def build_tokenizer(texts: Iterable[str], *, vocab_size: int = 400, chat_template: bool = True,
                    split_digits: bool = True) -> Any:
    """A ``PreTrainedTokenizerFast`` (byte-level BPE) trained on ``texts``.

    vocab_size: target size including the 256 byte symbols and the 3 special tokens
    (``<|pad|>``, ``<|im_start|>`` = bos, ``<|im_end|>`` = eos). split_digits: one token per digit.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                        if split_digits else byte_level)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(list(texts), trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|pad|>",
                                  bos_token="<|im_start|>")
    if chat_template:
        tok.chat_template = CHATML
    return tok


def llama_parameters(vocab: int, hidden: int, layers: int, intermediate: int | None = None) -> int:
    """Parameter count of ``build_llama``'s model (tied embeddings, no biases)."""
    inter = intermediate or default_intermediate(hidden)
    per_layer = 4 * hidden * hidden + 3 * hidden * inter + 2 * hidden
    return vocab * hidden + layers * per_layer + hidden


def default_intermediate(hidden: int) -> int:
    """Llama's 8/3 x hidden, rounded up to a multiple of 16."""
    return -(-(8 * hidden // 3) // 16) * 16


def build_llama(tokenizer: Any, path: str | Path, *, hidden: int = 16, layers: int = 2, heads: int = 2,
                intermediate: int | None = None, seed: int = 0, max_positions: int = 1024) -> Path:
    """Write a random-init ``LlamaForCausalLM`` for ``tokenizer`` (and the tokenizer) to ``path``.

    The initialisation depends only on ``seed`` and the shapes (torch's RNG is forked, so the
    caller's global RNG state is left alone).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden,
                      intermediate_size=intermediate or default_intermediate(hidden),
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                      max_position_embeddings=max_positions, tie_word_embeddings=True,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      bos_token_id=tokenizer.bos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    path = Path(path)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
