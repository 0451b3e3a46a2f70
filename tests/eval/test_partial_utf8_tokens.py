"""A token holding part of a multi-byte character shows its bytes, not "\ufffd"."""

from sae_kit.eval.analysis.tokens import decode_token, token_table


def test_partial_utf8_tokens_show_their_bytes_and_whole_ones_their_text(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    ids = tokenizer("“quoted” the", add_special_tokens=False)["input_ids"]
    shown = [decode_token(tokenizer, i) for i in ids]
    assert all("\ufffd" not in s for s in shown), shown
    assert any("\\xe2" in s for s in shown), shown  # the curly quote's lead byte, as bytes
    for token_id, text in zip(ids, shown, strict=True):  # whole tokens: their own text
        plain = tokenizer.convert_tokens_to_string([tokenizer.convert_ids_to_tokens(token_id)])
        assert (text == plain) if "\ufffd" not in plain else ("\\x" in text), (text, plain)
    assert token_table(tokenizer, ids)  # the report's token column takes the same text
