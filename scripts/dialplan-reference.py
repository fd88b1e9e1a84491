#!/usr/bin/env python3
"""Write dialplans/REFERENCE.md, the key-by-key dialplan reference, from the JSON Schema.

Run after changing dialplans/dialplan.schema.json:  python3 scripts/dialplan-reference.py
tests/packaging.rs checks that every key of the schema appears in the reference.
"""
import json
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SCHEMA = os.path.join(ROOT, "dialplans", "dialplan.schema.json")
OUT = os.path.join(ROOT, "dialplans", "REFERENCE.md")


def kind(node):
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    t = node.get("type")
    if isinstance(t, list):
        t = " or ".join(t)
    if t == "array" and isinstance(node.get("items"), dict):
        return f"array of {kind(node['items'])}"
    if t is None and ("oneOf" in node or "anyOf" in node):
        alts = node.get("oneOf") or node.get("anyOf")
        return " or ".join(sorted({kind(a) for a in alts}))
    return t or ("object" if "properties" in node else "any")


def limits(node):
    out = []
    for key, word in (("minimum", "≥"), ("maximum", "≤"), ("exclusiveMinimum", ">"),
                      ("minLength", "length ≥"), ("minItems", "items ≥"), ("maxItems", "items ≤")):
        if key in node:
            out.append(f"{word} {node[key]}")
    return ", ".join(out)


def walk(node, path, required, rows):
    props = node.get("properties", {})
    req = set(node.get("required", []))
    for name, child in props.items():
        p = f"{path}.{name}" if path else name
        default = json.dumps(child["default"]) if "default" in child else ""
        need = "yes" if name in req else ""
        desc = child.get("description", "").replace("|", "\\|").replace("\n", " ")
        lim = limits(child)
        if lim:
            desc = f"{desc} ({lim})" if desc else lim
        rows.append((p, kind(child), need, f"`{default}`" if default else "", desc))
        walk(child, p, req, rows)
        items = child.get("items")
        if isinstance(items, dict) and items.get("properties"):
            walk(items, f"{p}[]", set(), rows)
        extra = child.get("additionalProperties")
        if isinstance(extra, dict) and extra.get("properties"):
            walk(extra, f"{p}.*", set(), rows)


def main():
    schema = json.load(open(SCHEMA, encoding="utf-8"))
    rows = []
    walk(schema, "", set(), rows)
    lines = [
        "# Dialplan reference",
        "",
        "Generated from `dialplan.schema.json` by `scripts/dialplan-reference.py`; do not edit by",
        "hand. `dialback check FILE` applies these rules and the ones that need the whole document",
        "(see README.md in this directory). `[]` marks the items of a list, `*` any key of a map.",
        "",
        "| key | type | required | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for p, k, need, default, desc in rows:
        lines.append(f"| `{p}` | {k} | {need} | {default} | {desc} |")
    open(OUT, "w", encoding="utf-8").write("\n".join(lines) + "\n")
    print(f"wrote {OUT}: {len(rows)} keys")


if __name__ == "__main__":
    main()
