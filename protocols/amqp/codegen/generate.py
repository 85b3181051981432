#!/usr/bin/env python3
"""Generate protocols/amqp/src/method.rs from methods.json (warren's list of AMQP 0-9-1 methods).

Usage:
  python3 protocols/amqp/codegen/generate.py [--check]
  python3 protocols/amqp/codegen/generate.py --import-rabbitmq PATH [--check]

The first form reads methods.json beside this script and writes ../src/method.rs, formatted
with rustfmt (if rustfmt is on PATH), so the committed file is rustfmt-clean. With --check
nothing is written; the script exits non-zero if src/method.rs differs from what it would
write (CI runs this).

methods.json is the project's own file, in a format of our own, and holds facts about the
public AMQP 0-9-1 protocol only, as much as this generator uses:

  {"format": "warren-amqp-methods/1",
   "classes": [{"id": 60, "name": "basic", "methods": [
     {"id": 40, "name": "publish", "content": true, "fields": [
       {"name": "ticket", "type": "short", "default": 0}, ...]}, ...]}, ...]}

Classes and methods are sorted by id. "synchronous" and "content" are given only when true.
Fields are in wire order; "type" is the wire type (bit, octet, short, long, longlong,
timestamp, shortstr, longstr, table), with the spec's domains already resolved; "default" is
the spec's documented default, given only when there is one (and not an empty table).

The second form is a one-off importer: it (re)writes methods.json from RabbitMQ's AMQP 0-9-1
codegen JSON (amqp-rabbitmq-0.9.1.json, rabbitmq-server deps/rabbitmq_codegen/, MPL 2.0),
taking only the facts above (no prose, no constants, no content properties). That JSON is
third-party and is not kept in this repository: pass the path of your own copy. With --check
it only verifies that methods.json is what the import would write. Run the first form after an
import to regenerate method.rs.
"""

import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS_NAME = "methods.json"
METHODS = os.path.join(HERE, METHODS_NAME)
FORMAT = "warren-amqp-methods/1"
OUT = os.path.join(HERE, "..", "src", "method.rs")

RUST_TYPES = {
    "bit": "bool",
    "octet": "u8",
    "short": "u16",
    "long": "u32",
    "longlong": "u64",
    "timestamp": "u64",
    "shortstr": "String",
    "longstr": "Bytes",
    "table": "FieldTable",
}

ARB = {
    "bit": "any::<bool>()",
    "octet": "any::<u8>()",
    "short": "any::<u16>()",
    "long": "any::<u32>()",
    "longlong": "any::<u64>()",
    "timestamp": "any::<u64>()",
    "shortstr": "arb_shortstr()",
    "longstr": "arb_longstr()",
    "table": "arb_table()",
}


def camel(name):
    return "".join(p[:1].upper() + p[1:] for p in name.split("-"))


def field_name(name):
    n = name.replace("-", "_")
    return "kind" if n == "type" else n


class Method:
    def __init__(self, cls, m):
        self.cls_id = cls["id"]
        self.name = m["name"]
        self.id = m["id"]
        self.struct = camel(cls["name"]) + camel(m["name"])
        self.content = bool(m.get("content", False))
        self.sync = bool(m.get("synchronous", False))
        # RabbitMQ's method names: 'basic.get_ok', 'connection.start_ok'.
        self.rmq_name = "%s.%s" % (cls["name"], m["name"].replace("-", "_"))
        self.spec_name = "%s.%s" % (cls["name"], m["name"])
        self.args = []
        for a in m["fields"]:
            self.args.append({
                "wire": a["name"],
                "field": field_name(a["name"]),
                "type": a["type"],
                "default": a.get("default"),
            })


def load(path):
    """Reads methods.json (our format, see the module docstring) into a list of Methods."""
    with open(path) as f:
        spec = json.load(f)
    if spec.get("format") != FORMAT:
        sys.exit("%s: format is %r, expected %r" % (path, spec.get("format"), FORMAT))
    classes = sorted(spec["classes"], key=lambda c: c["id"])
    methods = []
    for c in classes:
        for m in sorted(c["methods"], key=lambda m: m["id"]):
            methods.append(Method(c, m))
    seen = set()
    for m in methods:
        if (m.cls_id, m.id) in seen:
            sys.exit("%s: duplicate method %d.%d (%s)" % (path, m.cls_id, m.id, m.spec_name))
        seen.add((m.cls_id, m.id))
        for a in m.args:
            if a["type"] not in RUST_TYPES:
                sys.exit("unknown field type %r in %s" % (a["type"], m.spec_name))
    return methods


def import_rabbitmq(path):
    """Our methods.json document, built from RabbitMQ's AMQP 0-9-1 codegen JSON at path.

    Takes class and method ids and names, the synchronous and content flags, and each
    argument's name, type (domains resolved) and default; nothing else.
    """
    with open(path) as f:
        rmq = json.load(f)
    domains = dict(rmq["domains"])
    # Resolve domains that point at other domains.
    for k, v in list(domains.items()):
        while v in domains and domains[v] != v:
            v = domains[v]
        domains[k] = v
    classes = []
    for c in sorted(rmq["classes"], key=lambda c: c["id"]):
        methods = []
        for m in sorted(c["methods"], key=lambda m: m["id"]):
            method = {"id": m["id"], "name": m["name"]}
            if m.get("synchronous"):
                method["synchronous"] = True
            if m.get("content"):
                method["content"] = True
            fields = []
            for a in m["arguments"]:
                field = {"name": a["name"], "type": a.get("type") or domains[a["domain"]]}
                dflt = a.get("default-value")
                if dflt is not None and dflt != {}:
                    field["default"] = dflt
                fields.append(field)
            method["fields"] = fields
            methods.append(method)
        classes.append({"id": c["id"], "name": c["name"], "methods": methods})
    return {"format": FORMAT, "classes": classes}


def dump_methods(doc):
    """methods.json text: one line per class header, method header and field (diffs well)."""
    d = json.dumps
    out = ["{"]
    out.append('  "format": %s,' % d(doc["format"]))
    out.append('  "classes": [')
    for ci, c in enumerate(doc["classes"]):
        out.append('    {"id": %s, "name": %s, "methods": [' % (d(c["id"]), d(c["name"])))
        for mi, m in enumerate(c["methods"]):
            head = {k: v for k, v in m.items() if k != "fields"}
            if not m["fields"]:
                out.append('      %s, "fields": []}%s' % (
                    d(head)[:-1], "," if mi + 1 < len(c["methods"]) else ""))
                continue
            out.append('      %s, "fields": [' % d(head)[:-1])
            for fi, a in enumerate(m["fields"]):
                out.append('        %s%s' % (d(a), "," if fi + 1 < len(m["fields"]) else ""))
            out.append('      ]}%s' % ("," if mi + 1 < len(c["methods"]) else ""))
        out.append('    ]}%s' % ("," if ci + 1 < len(doc["classes"]) else ""))
    out.append("  ]")
    out.append("}")
    text = "\n".join(out) + "\n"
    assert json.loads(text) == doc
    return text


def bit_groups(args):
    """Yields ('bits', [args]) for runs of bits (at most 8 per octet) and ('one', arg)."""
    run = []
    for a in args:
        if a["type"] == "bit":
            if len(run) == 8:
                yield ("bits", run)
                run = []
            run.append(a)
        else:
            if run:
                yield ("bits", run)
                run = []
            yield ("one", a)
    if run:
        yield ("bits", run)


def gen_struct(m, w):
    w("/// `%s` (class %d, method %d)%s%s." % (
        m.spec_name, m.cls_id, m.id,
        ", carries content" if m.content else "",
        ", synchronous" if m.sync else ""))
    w("///")
    w("/// `Default` gives zero/empty fields, not the spec's documented defaults.")
    w("#[derive(Debug, Clone, PartialEq, Default)]")
    if not m.args:
        w("pub struct %s;" % m.struct)
    else:
        w("pub struct %s {" % m.struct)
        for a in m.args:
            dflt = ""
            if a["default"] is not None and a["default"] != {}:
                dflt = "; spec default %s" % json.dumps(a["default"])
            w("    /// `%s` (%s%s)." % (a["wire"], a["type"], dflt))
            w("    pub %s: %s," % (a["field"], RUST_TYPES[a["type"]]))
        w("}")
    w("")
    w("impl %s {" % m.struct)
    w("    /// Class id of this method.")
    w("    pub const CLASS_ID: u16 = %d;" % m.cls_id)
    w("    /// Method id of this method.")
    w("    pub const METHOD_ID: u16 = %d;" % m.id)
    w("    /// RabbitMQ-style name, e.g. `basic.get_ok`.")
    w("    pub const NAME: &'static str = %s;" % json.dumps(m.rmq_name))
    w("")
    # decode
    buf = "buf" if m.args else "_buf"
    w("    /// Reads the arguments (after class and method id) from the front of `buf`.")
    w("    pub(crate) fn decode_args(%s: &mut Bytes) -> Result<Self, DecodeError> {" % buf)
    if not m.args:
        w("        Ok(%s)" % m.struct)
    else:
        for kind, g in bit_groups(m.args):
            if kind == "bits":
                var = "bits_" + g[0]["field"]
                w('        let %s = wire::get_u8(buf, "%s %s")?;' % (var, m.rmq_name, g[0]["wire"]))
                for i, a in enumerate(g):
                    w("        let %s = %s & (1 << %d) != 0;" % (a["field"], var, i))
            else:
                a = g
                what = '"%s %s"' % (m.rmq_name, a["wire"])
                t = a["type"]
                if t == "octet":
                    e = "wire::get_u8(buf, %s)?" % what
                elif t == "short":
                    e = "wire::get_u16(buf, %s)?" % what
                elif t == "long":
                    e = "wire::get_u32(buf, %s)?" % what
                elif t in ("longlong", "timestamp"):
                    e = "wire::get_u64(buf, %s)?" % what
                elif t == "shortstr":
                    e = "wire::get_shortstr(buf, %s)?" % what
                elif t == "longstr":
                    e = "wire::get_longstr(buf, %s)?" % what
                elif t == "table":
                    e = "FieldTable::decode(buf)?"
                w("        let %s = %s;" % (a["field"], e))
        w("        Ok(%s {" % m.struct)
        for a in m.args:
            w("            %s," % a["field"])
        w("        })")
    w("    }")
    w("")
    out = "out" if m.args else "_out"
    w("    /// Appends the arguments (after class and method id) to `out`.")
    w("    pub(crate) fn encode_args(&self, %s: &mut BytesMut) {" % out)
    for kind, g in bit_groups(m.args):
        if kind == "bits":
            terms = ["u8::from(self.%s)%s" % (a["field"], " << %d" % i if i else "")
                     for i, a in enumerate(g)]
            w("        out.put_u8(%s);" % " | ".join(terms))
        else:
            a = g
            t = a["type"]
            f = "self." + a["field"]
            if t == "octet":
                w("        out.put_u8(%s);" % f)
            elif t == "short":
                w("        out.put_u16(%s);" % f)
            elif t == "long":
                w("        out.put_u32(%s);" % f)
            elif t in ("longlong", "timestamp"):
                w("        out.put_u64(%s);" % f)
            elif t == "shortstr":
                w("        wire::put_shortstr(out, &%s);" % f)
            elif t == "longstr":
                w("        wire::put_longstr(out, &%s);" % f)
            elif t == "table":
                w("        %s.encode(out);" % f)
    w("    }")
    w("}")
    w("")
    w("impl From<%s> for Method {" % m.struct)
    w("    fn from(m: %s) -> Self {" % m.struct)
    w("        Method::%s(m)" % m.struct)
    w("    }")
    w("}")
    w("")


def gen(methods):
    lines = []
    w = lines.append
    w("// Generated by codegen/generate.py from codegen/%s, do not edit." % METHODS_NAME)
    w("// Regenerate with `python3 protocols/amqp/codegen/generate.py`.")
    w("")
    w("//! Every AMQP 0-9-1 method of every class RabbitMQ defines, as one struct each, and")
    w("//! the [`Method`] enum over them (AMQP §4.2.4; ids, fields and types as in RabbitMQ's")
    w("//! codegen JSON, imported into codegen/%s)." % METHODS_NAME)
    w("//!")
    w("//! A method payload is `class id (u16), method id (u16), arguments`. Arguments are")
    w("//! decoded with checked reads; consecutive `bit` arguments share one octet, least")
    w("//! significant bit first (AMQP §4.2.5.2). Extra bytes after the last argument are")
    w("//! rejected ([`DecodeError::TrailingBytes`]), as RabbitMQ's decoder does. Short strings")
    w("//! must be UTF-8. A short string longer than 255 bytes is a caller bug on encode: it")
    w("//! trips a `debug_assert!` and is clamped to 255 bytes at a char boundary in release")
    w("//! builds (never a panic).")
    w("")
    w("use bytes::{BufMut, Bytes, BytesMut};")
    w("")
    w("use crate::error::DecodeError;")
    w("use crate::table::FieldTable;")
    w("use crate::wire;")
    w("")
    w("mod hot;")
    w("")
    w("pub(crate) use hot::decode_hot_method;")
    w("pub use hot::{")
    w("    encode_basic_deliver_frame, encode_basic_publish_frame, peek_basic_publish, BasicPublishRef,")
    w("};")
    w("")
    for m in methods:
        gen_struct(m, w)

    w("/// Any AMQP 0-9-1 method; one variant per method struct, named the same.")
    w("#[derive(Debug, Clone, PartialEq)]")
    w("pub enum Method {")
    for m in methods:
        w("    /// `%s`" % m.spec_name)
        w("    %s(%s)," % (m.struct, m.struct))
    w("}")
    w("")
    w("impl Method {")

    def simple(fn, doc, ret, val):
        w("    /// %s" % doc)
        w("    pub fn %s(&self) -> %s {" % (fn, ret))
        w("        match self {")
        for m in methods:
            w("            Method::%s(_) => %s," % (m.struct, val(m)))
        w("        }")
        w("    }")
        w("")

    simple("class_id", "The class id.", "u16", lambda m: "%s::CLASS_ID" % m.struct)
    simple("method_id", "The method id within its class.", "u16",
           lambda m: "%s::METHOD_ID" % m.struct)
    simple("name", "RabbitMQ-style name, e.g. `\"basic.publish\"`, `\"queue.declare_ok\"`.",
           "&'static str", lambda m: "%s::NAME" % m.struct)
    # Group booleans for compactness.
    for fn, doc, pred in (
        ("has_content", "Whether a content header and body frames follow this method.",
         lambda m: m.content),
        ("is_synchronous", "Whether the spec marks the method synchronous (it expects a reply).",
         lambda m: m.sync),
    ):
        w("    /// %s" % doc)
        w("    pub fn %s(&self) -> bool {" % fn)
        yes = [m for m in methods if pred(m)]
        w("        matches!(")
        w("            self,")
        w("            " + " | ".join("Method::%s(_)" % m.struct for m in yes))
        w("        )")
        w("    }")
        w("")

    w("    /// Decodes a method frame payload (class id, method id, arguments).")
    w("    pub fn decode(mut payload: Bytes) -> Result<Method, DecodeError> {")
    w('        let class_id = wire::get_u16(&mut payload, "method class id")?;')
    w('        let method_id = wire::get_u16(&mut payload, "method id")?;')
    w("        let buf = &mut payload;")
    w("        let method = match (class_id, method_id) {")
    for m in methods:
        w("            (%d, %d) => Method::%s(%s::decode_args(buf)?)," % (
            m.cls_id, m.id, m.struct, m.struct))
    w("            _ => {")
    w("                return Err(DecodeError::UnknownMethod {")
    w("                    class_id,")
    w("                    method_id,")
    w("                })")
    w("            }")
    w("        };")
    w("        if !payload.is_empty() {")
    w("            return Err(DecodeError::TrailingBytes);")
    w("        }")
    w("        Ok(method)")
    w("    }")
    w("")
    w("    /// Appends the method payload (class id, method id, arguments) to `out`.")
    w("    pub fn encode(&self, out: &mut BytesMut) {")
    w("        out.put_u16(self.class_id());")
    w("        out.put_u16(self.method_id());")
    w("        match self {")
    for m in methods:
        w("            Method::%s(m) => m.encode_args(out)," % m.struct)
    w("        }")
    w("    }")
    w("}")
    w("")

    # Test support: every variant with default fields, and a proptest strategy.
    w("/// One value of every method, with default fields (test support).")
    w("#[cfg(test)]")
    w("pub(crate) fn all_default_methods() -> Vec<Method> {")
    w("    vec![")
    for m in methods:
        w("        Method::%s(%s%s)," % (m.struct, m.struct, "::default()" if m.args else ""))
    w("    ]")
    w("}")
    w("")
    w("/// Proptest strategies for every method (test support).")
    w("#[cfg(test)]")
    w("pub(crate) mod arb {")
    w("    use super::*;")
    w("    use crate::testutil::{arb_longstr, arb_shortstr, arb_table};")
    w("    use proptest::prelude::*;")
    w("")
    w("    /// Any method, every variant equally likely, with arbitrary arguments.")
    w("    pub(crate) fn arb_method() -> BoxedStrategy<Method> {")
    w("        proptest::strategy::Union::new(vec![")
    for m in methods:
        if not m.args:
            w("            Just(Method::%s(%s)).boxed()," % (m.struct, m.struct))
        else:
            strat = ", ".join(ARB[a["type"]] for a in m.args)
            names = ", ".join(a["field"] for a in m.args)
            if len(m.args) == 1:
                strat = "(%s,)" % strat
                pat = "(%s,)" % names
            else:
                strat = "(%s)" % strat
                pat = "(%s)" % names
            w("            %s" % strat)
            w("                .prop_map(|%s| Method::%s(%s { %s }))" % (
                pat, m.struct, m.struct, names))
            w("                .boxed(),")
    w("        ])")
    w("        .boxed()")
    w("    }")
    w("}")
    return "\n".join(lines) + "\n"


def usage():
    sys.exit("usage: generate.py [--check]\n"
             "       generate.py --import-rabbitmq PATH/amqp-rabbitmq-0.9.1.json [--check]")


def main():
    argv = sys.argv[1:]
    check = "--check" in argv
    argv = [a for a in argv if a != "--check"]
    if argv and argv[0] == "--import-rabbitmq":
        if len(argv) != 2:
            usage()
        text = dump_methods(import_rabbitmq(argv[1]))
        n = sum(len(c["methods"]) for c in json.loads(text)["classes"])
        if check:
            with open(METHODS) as f:
                if f.read() != text:
                    sys.exit("%s differs from the import of %s" % (METHODS, argv[1]))
            print("%s matches the import (%d methods)" % (METHODS, n))
            return
        with open(METHODS, "w") as f:
            f.write(text)
        print("wrote %s (%d methods); now run generate.py to regenerate method.rs" % (METHODS, n))
        return
    if argv:
        usage()
    methods = load(METHODS)
    src = gen(methods)
    rustfmt = shutil.which("rustfmt")
    if rustfmt:
        src = subprocess.run([rustfmt, "--edition", "2021", "--emit", "stdout"],
                             input=src, capture_output=True, text=True, check=True).stdout
    elif check:
        sys.exit("--check needs rustfmt on PATH: method.rs is committed rustfmt-formatted")
    else:
        print("warning: rustfmt not found; output is not formatted", file=sys.stderr)
    out = os.path.normpath(OUT)
    if check:
        with open(out) as f:
            if f.read() != src:
                sys.exit("%s is out of date: run python3 protocols/amqp/codegen/generate.py" % out)
        print("%s is up to date (%d methods)" % (out, len(methods)))
        return
    with open(out, "w") as f:
        f.write(src)
    print("wrote %s (%d methods)" % (out, len(methods)))


if __name__ == "__main__":
    main()
