#!/usr/bin/env python3
"""Validate famguard profile files against agent/policy/schema.json with an
independent implementation: Python's jsonschema (Debian: python3-jsonschema)
and PyYAML (python3-yaml). Used by agent/policy/schema_external_test.go.

Usage: validate.py SCHEMA FILE...   (FILE "-" reads JSON {"name": "yaml text"} from stdin)
Prints one JSON object per file: {"file": NAME, "errors": [...], "yaml_error": "..."}.

Why a custom YAML loader: PyYAML implements YAML 1.1, where yes/no/on/off
are booleans and 21:00 or 02:00:00:00:00:11 are base-60 integers. famguard
(yaml.v3) and editors (yaml-language-server) read YAML 1.2, where those are
text. Validating PyYAML's 1.1 reading would make `safe_search: yes` pass a
schema that the agent rejects. The loader below keeps PyYAML's parser and
swaps only the implicit type resolution for YAML 1.2's core schema.
"""
import json
import re
import sys

import jsonschema
import yaml


class Yaml12Loader(yaml.SafeLoader):
    pass


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int",
                           "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+.0123456789"))


def int12(loader, node):
    v = loader.construct_scalar(node)
    if v.startswith("0o"):
        return int(v[2:], 8)
    return int(v, 0) if v.startswith("0x") else int(v, 10)


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", int12)


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)
    docs = {}
    for name in sys.argv[2:]:
        if name == "-":
            docs.update(json.load(sys.stdin))
        else:
            with open(name, encoding="utf-8") as f:
                docs[name] = f.read()
    for name, text in docs.items():
        out = {"file": name, "errors": []}
        try:
            doc = yaml.load(text, Loader=Yaml12Loader)
        except yaml.YAMLError as e:
            out["yaml_error"] = str(e).replace("\n", " ")
        else:
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
                out["errors"].append("/".join(str(p) for p in e.absolute_path) + ": " + e.message)
        print(json.dumps(out))


if __name__ == "__main__":
    main()
