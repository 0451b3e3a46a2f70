from sae_kit.errors import first_line


def test_first_line_quotes_only_the_first_line_and_names_empty_errors():
    assert first_line(ValueError("  bad header\nlong detail\nmore")) == "bad header"
    assert first_line(OSError()) == "OSError"
