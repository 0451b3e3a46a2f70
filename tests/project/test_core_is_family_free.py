"""The core package never names a model family: families are plugins (see plugins/).

The scan covers code, not docstrings or comments, which may use a family as an example.
``AutoModel*`` / ``AutoConfig`` / ``AutoTokenizer`` are family-neutral and allowed.
"""

import ast
import re
from pathlib import Path

import pytest

import sae_kit

CORE = Path(sae_kit.__file__).parent
# A family name as the start of a class name (GPT2LMHeadModel, LlamaForCausalLM, OPTAdapter).
FAMILY_CLASS = re.compile(
    r"^(GPT2|GPTNeoX|NeoX|GPTJ|Llama|Mistral|Mixtral|Qwen\d*|OPT|Gemma\d*|Phi\d*|Falcon|Bloom|Pythia)"
    r"(For|Model|LMHead|Config|Adapter|Decoder|Layer|Block|Attention|MLP|RMSNorm|Rotary|Tokenizer"
    r"|PreTrained|$)"
)
FAMILY_TYPES = {"gpt2", "gpt_neox", "gptj", "llama", "mistral", "mixtral", "qwen2", "qwen3",
                "opt", "gemma", "gemma2", "phi", "phi3", "falcon", "bloom", "pythia"}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            found.add(id(first.value))
    return found


def _names(node: ast.AST) -> list[str]:
    """Identifiers a node imports or uses."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [getattr(node, "module", None) or "", *(a.name for a in node.names)]
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    return []


def _names_family(name: str) -> bool:
    return "transformers.models" in name or name.startswith("sae_kit_") or any(
        FAMILY_CLASS.search(part) for part in name.split(".")
    )


def family_references(source: str) -> list[str]:
    """Every place the code imports or names a model family (or a plugin module)."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        hits += [f"line {node.lineno}: {n}" for n in _names(node) if _names_family(n)]
        text = node.value if isinstance(node, ast.Constant) and id(node) not in docs else None
        if isinstance(text, str) and ("transformers.models" in text
                                      or text.lower() in FAMILY_TYPES):
            hits.append(f"line {node.lineno}: string {text!r}")
    return hits


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_names_no_model_family(path):
    assert family_references(path.read_text()) == []


@pytest.mark.parametrize("snippet", [
    "from transformers.models.llama import modeling_llama",
    "import transformers.models.gpt2",
    "from transformers import GPT2LMHeadModel",
    "from transformers import LlamaForCausalLM as Model",
    "import transformers\nm = transformers.GPTNeoXForCausalLM",
    "if config.model_type == 'llama':\n    pass",
    "from sae_kit_gpt2 import GPT2Adapter",
])
def test_the_scan_catches_family_references(snippet):
    assert family_references(snippet)


def test_the_scan_allows_auto_classes_and_docstring_examples():
    source = '"""Example: class OPTAdapter with ``model.model.decoder.layers``."""\n' \
             "from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer\n"
    assert family_references(source) == []
