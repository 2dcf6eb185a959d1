"""The reference point for benchmarks/validate_speed.py: a plain ruamel.yaml + jsonschema script.

It validates files against the committed schema and prints one line per error, with no locations,
no semantic checks and no did-you-mean: the least a validator can do.
"""

import json
import sys
from pathlib import Path

import jsonschema
from ruamel.yaml import YAML

schema = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "experiment.schema.json").read_text())
validator = jsonschema.Draft202012Validator(schema)
yaml = YAML(typ="safe")
errors = 0
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as handle:
        data = yaml.load(handle)
    for error in validator.iter_errors(data):
        errors += 1
        print(f"{path}: {error.message}")
sys.exit(1 if errors else 0)
