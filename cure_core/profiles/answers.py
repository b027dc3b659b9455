"""The answer token ids, as the tokenizer writes each answer word right after a prompt.

"Yes" after ``Response:\\n`` and " Yes" after ``Answer:`` are different tokens, and a LLaMA
tokenizer writes "Yes" differently at the start of a text and after a newline, so the ids are
read from the tokenizer *in context*: the first token by which ``prompt + word`` differs from
``prompt``. TALLRec's LLaMA ids 8241 ("Yes") and 3782 ("No") come out of this rule.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from cure_core.errors import CureError


def answer_token_id(tokenizer: PreTrainedTokenizerBase, prompt: str, word: str, add_special_tokens: bool = True) -> int:
    """The id of the first token of ``word`` written right after ``prompt``."""
    base = tokenizer.encode(prompt, add_special_tokens=add_special_tokens)
    full = tokenizer.encode(prompt + word, add_special_tokens=add_special_tokens)
    start = 0
    while start < min(len(base), len(full)) and base[start] == full[start]:
        start += 1
    answer = full[start:]
    unk = tokenizer.unk_token_id
    written = tokenizer.decode(answer)
    if not answer or (unk is not None and unk in answer) or word.strip() not in written:
        raise CureError(
            f"the tokenizer cannot write the answer {word!r} after the prompt (it gives "
            f"{tokenizer.convert_ids_to_tokens(answer)})",
            "use a profile whose [answer] words this tokenizer can write, or the tokenizer the model was trained with",
        )
    return int(answer[0])


def answer_token_ids(
    tokenizer: PreTrainedTokenizerBase, prompt: str, yes: str, no: str, add_special_tokens: bool = True
) -> tuple[int, int]:
    """``(yes_id, no_id)`` in context; a CureError if they cannot be written or coincide."""
    yes_id = answer_token_id(tokenizer, prompt, yes, add_special_tokens)
    no_id = answer_token_id(tokenizer, prompt, no, add_special_tokens)
    if yes_id == no_id:
        token = tokenizer.convert_ids_to_tokens(yes_id)
        raise CureError(
            f"the answers {yes!r} and {no!r} begin with the same token {token!r} after the prompt, so they "
            "cannot be told apart",
            "use answer words whose first tokens differ",
        )
    return yes_id, no_id
