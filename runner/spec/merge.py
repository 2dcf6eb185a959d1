"""Deep merge of a run's overrides over the top-level sections, remembering where each value came from.

Each run is validated as a whole after merging; the provenance map lets an error inside an
override point at the override's own line rather than at the top-level section.
"""

from __future__ import annotations

from typing import Any

from runner.errors import KeyPath


def merge_sections(
    base: dict[str, Any], base_path: KeyPath, override: dict[str, Any], override_path: KeyPath
) -> tuple[dict[str, Any], dict[KeyPath, KeyPath]]:
    """Merge `override` into `base`.

    Rules: mappings merge key by key; anything else (scalars, lists) in the override replaces;
    `null` in the override removes the key (so its default applies); a mapping whose `kind`
    differs from the base's replaces it whole (an sgd optimizer keeps no adamw betas).

    Returns the merged data and, for every path in it (and every removed key), the path in the
    document where it was written.
    """
    sources: dict[KeyPath, KeyPath] = {}
    merged = _merge(base, base_path, override, override_path, (), sources)
    return merged, sources


def _merge(
    base: Any, base_path: KeyPath, over: Any, over_path: KeyPath, rel: KeyPath, sources: dict[KeyPath, KeyPath]
) -> Any:
    if not (isinstance(base, dict) and isinstance(over, dict)) or _kind_changes(base, over):
        return _adopt(over, over_path, rel, sources)
    sources[rel] = over_path
    out: dict[str, Any] = {}
    for key, value in base.items():
        if key not in over:
            out[key] = _adopt(value, (*base_path, key), (*rel, key), sources)
    for key, value in over.items():
        child = (*rel, key)
        if value is None:
            sources[child] = (*over_path, key)  # a key removed here: "missing" errors point at the null
        elif key in base and base[key] is not None:
            out[key] = _merge(base[key], (*base_path, key), value, (*over_path, key), child, sources)
        else:
            out[key] = _adopt(value, (*over_path, key), child, sources)
    return out


def _kind_changes(base: dict[str, Any], over: dict[str, Any]) -> bool:
    return "kind" in over and "kind" in base and over["kind"] != base["kind"]


def _adopt(value: Any, path: KeyPath, rel: KeyPath, sources: dict[KeyPath, KeyPath]) -> Any:
    """Take a subtree as it is, recording the source of each of its nodes."""
    sources[rel] = path
    if isinstance(value, dict):
        return {k: _adopt(v, (*path, k), (*rel, k), sources) for k, v in value.items()}
    if isinstance(value, list):
        return [_adopt(v, (*path, i), (*rel, i), sources) for i, v in enumerate(value)]
    return value


def source_of(sources: dict[KeyPath, KeyPath], rel: KeyPath) -> KeyPath:
    """The document path of `rel`, or of its nearest ancestor with a known source."""
    path = tuple(rel)
    while path:
        if path in sources:
            return sources[path]
        path = path[:-1]
    return sources.get((), ())
