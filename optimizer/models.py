"""Models: the architecture servesat costs, from the built-in zoo or a Hugging Face config.json."""

from __future__ import annotations

import functools
import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from optimizer.catalog import DTYPE_BYTES, read_text
from optimizer.errors import InputError, unknown_name


@dataclass(frozen=True)
class Model:
    """A dense decoder-only transformer, in the chapter's symbols (docs/cost-model.md)."""

    name: str
    num_layers: int  # L
    d_model: int  # D
    d_ff: int  # F
    num_heads: int  # N
    num_kv_heads: int  # K
    head_dim: int  # H
    vocab: int  # V
    tie_embeddings: bool = False
    source: str = ""

    @property
    def param_count(self) -> int:
        """P = L*D*(3F + 2H(N+K)) + 2*D*V, one D*V when the embeddings are tied."""
        L, D, F, N, K, H, V = (
            self.num_layers,
            self.d_model,
            self.d_ff,
            self.num_heads,
            self.num_kv_heads,
            self.head_dim,
            self.vocab,
        )
        return L * D * (3 * F + 2 * H * (N + K)) + (1 if self.tie_embeddings else 2) * D * V

    def kv_bytes_per_token(self, kv_dtype: str) -> float:
        """2*K*H*L*b_kv: keys and values of every layer for one token."""
        return 2 * self.num_kv_heads * self.head_dim * self.num_layers * DTYPE_BYTES[kv_dtype]


_REQUIRED_CONFIG_KEYS = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size")
_MOE_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "kv_lora_rank")


def model_from_config(config: dict, name: str, origin: str, source: str = "") -> Model:
    """Build a Model from Hugging Face config.json keys; `origin` names the file in errors."""
    for key in _REQUIRED_CONFIG_KEYS:
        if key not in config:
            raise InputError(f"{origin}: config lacks key {key!r}")
    for key in _MOE_KEYS:
        if config.get(key):
            raise InputError(
                f"{origin}: key {key!r} marks a mixture-of-experts or MLA model, "
                "which the book profile does not model yet"
            )
    values = {}
    for key in (*_REQUIRED_CONFIG_KEYS, "num_key_value_heads", "head_dim"):
        if key not in config or (key == "head_dim" and config[key] is None):
            continue
        v = config[key]
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise InputError(f"{origin}: key {key!r} must be a positive integer, got {v!r}")
        values[key] = v
    heads = values["num_attention_heads"]
    kv_heads = values.get("num_key_value_heads", heads)  # Hugging Face's default: no GQA
    if heads % kv_heads:
        raise InputError(f"{origin}: num_key_value_heads {kv_heads} must divide num_attention_heads {heads}")
    if "head_dim" not in values and values["hidden_size"] % heads:
        raise InputError(
            f"{origin}: config lacks key 'head_dim' and hidden_size {values['hidden_size']} "
            f"is not a multiple of num_attention_heads {heads}"
        )
    head_dim = values.get("head_dim", values["hidden_size"] // heads)
    tie = config.get("tie_word_embeddings", False)
    if not isinstance(tie, bool):
        raise InputError(f"{origin}: key 'tie_word_embeddings' must be true or false, got {tie!r}")
    return Model(
        name=name,
        num_layers=values["num_hidden_layers"],
        d_model=values["hidden_size"],
        d_ff=values["intermediate_size"],
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab=values["vocab_size"],
        tie_embeddings=tie,
        source=source,
    )


@functools.cache
def _builtin_model_tables() -> dict[str, dict]:
    text = resources.files("optimizer").joinpath("data/models.toml").read_text()
    return tomllib.loads(text)["models"]


def builtin_models() -> dict[str, Model]:
    """The built-in zoo, by short name."""
    return {
        n: model_from_config(t, n, "built-in models.toml", t.get("source", ""))
        for n, t in _builtin_model_tables().items()
    }


def model_aliases() -> dict[str, str]:
    """Lower-cased alias (3.1 names, Hugging Face ids) -> built-in short name."""
    return {a.lower(): n for n, t in _builtin_model_tables().items() for a in t.get("aliases", [])}


def is_builtin_model(name: str) -> bool:
    """A built-in model's name or alias (anything else is a path to a config)."""
    key = name.lower()
    return key in _builtin_model_tables() or key in model_aliases()


def load_model(name_or_path: str | Path) -> Model:
    """A built-in model by name or alias, or a Hugging Face style config.json by path."""
    text = str(name_or_path)
    tables = _builtin_model_tables()
    key = text.lower()
    key = key if key in tables else model_aliases().get(key, key)
    if key in tables:
        return model_from_config(tables[key], key, "built-in models.toml", tables[key].get("source", ""))
    path = Path(text)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" or path.exists():
        text = read_text(path, "model file")
        try:
            config = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(config, dict):
            raise InputError(f"{path}: expected a JSON object of config keys")
        label = path.parent.name if path.stem == "config" and path.parent.name else path.stem
        return model_from_config(config, label, str(path), str(path))
    raise unknown_name("model", text, sorted(tables))
