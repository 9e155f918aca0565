"""The examples in the SDK's docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = ["networks", "tiling", "translator", "samples", "losses", "lazy", "chunked"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"cyclegan_sdk.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
