"""Writes the documents of a YAML file (a test suite) as one JSON array:
yaml2json.py IN.yml OUT.json"""
import json
import sys

import yaml

with open(sys.argv[1]) as f:
    docs = [d for d in yaml.safe_load_all(f) if d]
with open(sys.argv[2], "w") as f:
    json.dump(docs, f)
