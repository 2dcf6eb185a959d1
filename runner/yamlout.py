"""Writing YAML for people and for PyYAML: comments kept, lists inline, ambiguous strings quoted."""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import SingleQuotedScalarString

# Strings a YAML 1.1 reader (PyYAML, which Accelerate uses) would turn into booleans or null.
_YAML11_SPECIAL = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", ""}


def yaml_tree(value: Any, comments: dict[str, str] | None = None) -> Any:
    """Plain data as a ruamel tree: mappings in block style, lists inline, risky strings quoted."""
    if isinstance(value, dict):
        tree = CommentedMap()
        for key, item in value.items():
            tree[key] = yaml_tree(item)
            if comments and key in comments:
                tree.yaml_add_eol_comment(comments[key], key, column=36)
        return tree
    if isinstance(value, list | tuple):
        seq = CommentedSeq(yaml_tree(item) for item in value)
        seq.fa.set_flow_style()
        return seq
    if isinstance(value, str) and (value.lower() in _YAML11_SPECIAL or value != value.strip()):
        return SingleQuotedScalarString(value)
    return value


def dump_yaml(tree: Any) -> str:
    """YAML text of a tree from `yaml_tree`; null written as `null`, not as nothing."""
    yaml = YAML(typ="rt", pure=True)
    yaml.width = 120
    yaml.representer.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    out = io.StringIO()
    yaml.dump(tree, out)
    return out.getvalue()
