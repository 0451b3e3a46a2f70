"""What a sweep file may name: its top-level values, its size, and where its points are written.

A sweep file may come from a colleague, so nothing it says may write outside its ``out``
directory: a point's directory is ``out/NAME`` with NAME one plain path component (no ``/``,
``\\``, ``..`` or absolute path), checked before anything is written. Names made from values
(``text_column = ["../x"]``) have their separators replaced; a name the file gives (``name =``)
is refused instead, so the user sees it. No torch import.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError

MAX_POINTS = 10_000
"""More points than any sweep trains (each is a whole training run): a larger grid is a typo."""

_TYPES = {"out": (str,), "plot": (str,), "eval_tokens": (int,), "eval_batch_size": (int,),
          "eval_alive_tokens": (int,), "seeds": (list,), "base": (dict,), "grid": (dict,),
          "runs": (list,)}
_WANTED = {str: "a string", int: "a whole number", dict: "a table", list: "a list of tables"}


def check_top_level(data: dict[str, Any], path: Path) -> None:
    """Each top-level value of the type it must have (and eval sizes >= 1), in one line."""
    for key, types in _TYPES.items():
        if key not in data:
            continue
        value = data[key]
        if not isinstance(value, types) or isinstance(value, bool):
            wanted = "a list of whole numbers" if key == "seeds" else _WANTED[types[0]]
            raise SaeKitError(f"{str(path)!r}: {key} = {value!r} must be {wanted}")
        if key in ("eval_tokens", "eval_batch_size", "eval_alive_tokens") and value < 1:
            raise SaeKitError(f"{str(path)!r}: {key} = {value!r} must be 1 or more")
        if key == "runs" and not all(isinstance(entry, dict) for entry in value):
            raise SaeKitError(f"{str(path)!r}: runs must be a list of tables ([[runs]] entries)")
    if data.get("out") == "":
        raise SaeKitError(f"{str(path)!r}: out must name a directory")
    plot = data.get("plot", "pareto.png")
    if plot in ("", ".", "..") or safe_part(plot) != plot:
        raise SaeKitError(f"{str(path)!r}: plot = {plot!r} must be a file name (it is written "
                          "into out), such as \"pareto.png\"")


def grid_size(grid: dict[str, Any], path: Path) -> int:
    """How many points the grid expands to, refused over MAX_POINTS before any is made."""
    for key, values in grid.items():
        if key == "seed" and values == []:
            raise SaeKitError(f"{str(path)!r}: grid.seed = [] has no seed, so no point would "
                              "train; list one or more, e.g. seed = [0, 1, 2]")
        if not isinstance(values, list) or not values:
            raise SaeKitError(f"{str(path)!r}: grid.{key} must be a non-empty list")
    size = math.prod(len(values) for values in grid.values())
    if size > MAX_POINTS:
        lengths = " x ".join(str(len(v)) for v in grid.values())
        raise SaeKitError(f"{str(path)!r}: the grid has {lengths} = {size:,} points, more than "
                          f"the {MAX_POINTS:,} a sweep may hold; shorten its lists or split it "
                          "into several sweep files")
    return size


def safe_part(text: str) -> str:
    """``text`` with path separators replaced, usable inside one directory name."""
    for sep in {"/", "\\", os.sep, os.altsep or "/", "\0"}:
        text = text.replace(sep, "_")
    return text


def point_dir(out: Path, name: Any, path: Path) -> Path:
    """``out/name``, refused in one line unless ``name`` is one plain component inside out."""
    plain = (isinstance(name, str) and name not in ("", ".", "..") and safe_part(name) == name
             and not Path(name).is_absolute())
    if plain:
        inside = (out / name).resolve().parent == out.resolve()
        if inside:
            return out / name
    raise SaeKitError(f"{str(path)!r}: point name {name!r} is not a plain directory name; a "
                      "point is written to out/NAME, so NAME may not hold '/', '\\' or '..' "
                      "(nothing is written outside out); rename it")
