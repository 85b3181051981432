#!/usr/bin/env python3
"""Checks Grafana dashboards against a running Prometheus that scrapes warren.

Usage:
  python3 tests/python/check_dashboards.py PROMETHEUS_URL --cluster NAME
      [--datasource-uid UID] [--dashboard FILE]... [--reference FILE]...

Every `--dashboard` and `--reference` file is read as Grafana dashboard JSON. For each one, every
panel (nested rows included) is walked and every target's `expr` is evaluated as an instant query
(GET /api/v1/query) after Grafana's variables are substituted the way a dashboard opened on
warren would: $namespace -> "" (no Kubernetes namespace label), $rabbitmq_cluster -> the cluster
name, $endpoint -> "metrics", $__rate_interval -> 1m, $__range -> 5m, $__interval -> 15s; any
other query variable gets the values its own query returns. An expression counts as having data
when Prometheus answers `success` with a non-empty result (NaN values are still data: a panel
shows them). Every templating variable query (`label_values(...)`) is evaluated too; apart from
`namespace` (warren exports no such label outside Kubernetes) each must return values, and
`rabbitmq_cluster` / `endpoint` must include the cluster name and "metrics".

`--dashboard` files (the repository's own) are also checked for structure: title, uid, panels
and templating at the top; every panel has a type and a gridPos; every panel that is not a row
has at least one target with a refId and an expr; every datasource uid (panel, target, variable)
is the provisioned one (`--datasource-uid`). `--reference` files (RabbitMQ's dashboard) are only
queried.

Prints one line per expression and variable (OK / EMPTY / ERROR) and exits 1 listing every
failure; standard library only. Run by tests/prometheus_dashboards.rs.
"""

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

# The values Grafana would use on warren's dashboards (see the module docs); the cluster name is
# added from the command line.
FIXED = {
    "namespace": "",
    "endpoint": "metrics",
    "__rate_interval": "1m",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
    "__interval": "15s",
    "__interval_ms": "15000",
}

# Variables a dashboard may leave empty: warren has no Kubernetes namespace label.
MAY_BE_EMPTY = {"namespace"}

# ${name}, ${name:format}, [[name]], [[name:format]], $name.
VARIABLE = re.compile(
    r"\$\{(?P<braced>\w+)(?::[^}]*)?\}|\[\[(?P<bracketed>\w+)(?::[^\]]*)?\]\]|\$(?P<plain>\w+)"
)

TIMEOUT = 10


class Prometheus:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def get(self, path, params):
        """The decoded JSON answer of GET path?params; raises RuntimeError on failure."""
        query = urllib.parse.urlencode(params, doseq=True)
        url = "%s%s?%s" % (self.url, path, query)
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            body = error.read()
            try:
                answer = json.loads(body)
            except ValueError:
                raise RuntimeError("HTTP %d: %s" % (error.code, body[:300]))
            raise RuntimeError(
                "%s: %s" % (answer.get("errorType", "error"), answer.get("error", ""))
            )
        except (urllib.error.URLError, OSError) as error:
            raise RuntimeError("request failed: %s" % error)
        answer = json.loads(body)
        if answer.get("status") != "success":
            raise RuntimeError(
                "%s: %s" % (answer.get("errorType", "error"), answer.get("error", ""))
            )
        return answer["data"]

    def query(self, expr):
        return self.get("/api/v1/query", {"query": expr})

    def label_values(self, label, selector=None):
        params = {"match[]": [selector]} if selector else {}
        return sorted(self.get("/api/v1/label/%s/values" % label, params))


def substitute(text, values, unknown):
    """`text` with every known variable replaced; names not in `values` go into `unknown`."""

    def replace(match):
        name = match.group("braced") or match.group("bracketed") or match.group("plain")
        if name in values:
            return values[name]
        unknown.add(name)
        return match.group(0)

    return VARIABLE.sub(replace, text)


def panels(items):
    """Every panel, depth first, with rows' nested (collapsed) panels."""
    for panel in items or []:
        yield panel
        yield from panels(panel.get("panels"))


def split_label_values(query):
    """(selector or None, label) of `label_values([selector,] label)`, or None."""
    match = re.fullmatch(r"\s*label_values\s*\((.*)\)\s*", query, re.S)
    if not match:
        return None
    inner = match.group(1)
    depth = 0
    split = -1
    for i, c in enumerate(inner):
        if c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        elif c == "," and depth == 0:
            split = i
    if split < 0:
        return None, inner.strip()
    return inner[:split].strip(), inner[split + 1 :].strip()


def variable_query_text(variable):
    query = variable.get("query")
    if isinstance(query, dict):
        query = query.get("query")
    if not query:
        query = variable.get("definition")
    return query or ""


def apply_regex(values, pattern):
    """Grafana's variable `regex` (/re/ form): keep matches, the first group if any."""
    if not pattern:
        return values
    body = pattern
    if body.startswith("/") and body.rfind("/") > 0:
        body = body[1 : body.rfind("/")]
    compiled = re.compile(body)
    kept = []
    for value in values:
        match = compiled.search(value)
        if match:
            kept.append(match.group(1) if match.groups() else value)
    return kept


def format_value(values, variable):
    """What Grafana substitutes for a variable with these values."""
    if not values:
        return ""
    if variable.get("includeAll") and (variable.get("multi") or len(values) > 1):
        return variable.get("allValue") or "(%s)" % "|".join(re.escape(v) for v in values)
    return values[0]


def summarise(data):
    """A short text for an instant query result."""
    result = data.get("result")
    kind = data.get("resultType")
    if kind in ("scalar", "string"):
        return "%s %s" % (kind, result[1])
    shown = []
    for series in result[:3]:
        labels = series.get("metric", {})
        name = labels.get("__name__", "")
        keys = ",".join(
            "%s=%s" % (k, v)
            for k, v in sorted(labels.items())
            if k not in ("__name__", "instance", "job")
        )
        shown.append("%s{%s} %s" % (name, keys, series.get("value", [None, "?"])[1]))
    more = " (+%d more)" % (len(result) - 3) if len(result) > 3 else ""
    return "; ".join(shown) + more


def is_data(data):
    result = data.get("result")
    if data.get("resultType") in ("scalar", "string"):
        return result is not None
    return bool(result)


class Checker:
    def __init__(self, prometheus, cluster, datasource_uid):
        self.prometheus = prometheus
        self.cluster = cluster
        self.datasource_uid = datasource_uid
        self.failures = []
        self.counts = {"OK": 0, "EMPTY": 0, "ERROR": 0}

    def report(self, status, dashboard, what, detail, expr=None):
        self.counts[status] = self.counts.get(status, 0) + 1
        print("%-5s %s | %s | %s" % (status, dashboard, what, detail), flush=True)
        if status != "OK":
            line = "%s %s | %s | %s" % (status, dashboard, what, detail)
            if expr is not None:
                line += "\n      expr: %s" % " ".join(expr.split())
            self.failures.append(line)

    def structure(self, dashboard, message):
        print("ERROR %s | structure | %s" % (dashboard, message), flush=True)
        self.counts["ERROR"] += 1
        self.failures.append("ERROR %s | structure | %s" % (dashboard, message))

    # -- variables ------------------------------------------------------------------------

    def resolve_variables(self, name, dashboard):
        """Evaluates the templating variables in order; returns the substitution values."""
        values = dict(FIXED)
        values["rabbitmq_cluster"] = self.cluster
        templating = dashboard.get("templating") or {}
        for variable in templating.get("list") or []:
            var = variable.get("name", "?")
            kind = variable.get("type")
            what = "variable $%s" % var
            if kind == "query":
                found = self.variable_query(name, what, variable, values)
                if var not in values:
                    values[var] = format_value(found, variable)
            elif kind == "custom":
                options = [o.strip() for o in variable_query_text(variable).split(",")]
                values.setdefault(var, options[0] if options else "")
            elif kind in ("constant", "textbox"):
                current = (variable.get("current") or {}).get("value")
                values.setdefault(var, current or variable_query_text(variable))
            elif kind == "interval":
                options = [o.strip() for o in variable_query_text(variable).split(",")]
                values.setdefault(var, options[0] if options and options[0] else "1m")
            elif kind == "datasource":
                values.setdefault(var, self.datasource_uid or "")
        return values

    def variable_query(self, name, what, variable, values):
        query = variable_query_text(variable)
        unknown = set()
        text = substitute(query, values, unknown)
        if unknown:
            self.report("ERROR", name, what, "unknown variables %s" % sorted(unknown), query)
            return []
        try:
            parsed = split_label_values(text)
            if parsed is not None:
                selector, label = parsed
                found = self.prometheus.label_values(label, selector)
            elif re.fullmatch(r"\s*metrics\s*\((.*)\)\s*", text, re.S):
                pattern = re.fullmatch(r"\s*metrics\s*\((.*)\)\s*", text, re.S).group(1)
                found = [
                    n
                    for n in self.prometheus.label_values("__name__")
                    if re.search(pattern.strip(), n)
                ]
            else:
                match = re.fullmatch(r"\s*query_result\s*\((.*)\)\s*", text, re.S)
                expr = match.group(1) if match else text
                data = self.prometheus.query(expr)
                found = [json.dumps(s) for s in data.get("result") or []]
        except RuntimeError as error:
            self.report("ERROR", name, what, str(error), text)
            return []
        found = apply_regex(found, variable.get("regex"))
        var = variable.get("name")
        if var == "rabbitmq_cluster" and self.cluster not in found:
            self.report(
                "EMPTY" if not found else "ERROR",
                name,
                what,
                "cluster %r not among %s" % (self.cluster, found),
                text,
            )
        elif var == "endpoint" and "metrics" not in found:
            self.report(
                "EMPTY" if not found else "ERROR",
                name,
                what,
                "endpoint 'metrics' not among %s" % found,
                text,
            )
        elif not found and var in MAY_BE_EMPTY:
            print(
                "OK    %s | %s | no values (none expected: no namespace label outside "
                "Kubernetes)" % (name, what),
                flush=True,
            )
            self.counts["OK"] += 1
        elif not found:
            self.report("EMPTY", name, what, "no values", text)
        else:
            self.report("OK", name, what, "values %s" % found[:5])
        return found

    # -- expressions ----------------------------------------------------------------------

    def expressions(self, name, dashboard, values):
        for panel in panels(dashboard.get("panels")):
            title = panel.get("title") or "(untitled %s)" % panel.get("type", "panel")
            for target in panel.get("targets") or []:
                expr = target.get("expr")
                if not isinstance(expr, str) or not expr.strip():
                    continue
                what = "%s [%s]" % (title, target.get("refId", "?"))
                unknown = set()
                text = substitute(expr, values, unknown)
                if unknown:
                    self.report("ERROR", name, what, "unknown variables %s" % sorted(unknown), expr)
                    continue
                try:
                    data = self.prometheus.query(text)
                except RuntimeError as error:
                    self.report("ERROR", name, what, str(error), text)
                    continue
                if is_data(data):
                    self.report("OK", name, what, summarise(data))
                else:
                    self.report("EMPTY", name, what, "no series", text)

    # -- structure (the repository's dashboards) ------------------------------------------

    def check_datasource(self, name, where, datasource):
        if datasource is None:
            return
        if isinstance(datasource, dict):
            uid = datasource.get("uid")
        else:
            uid = datasource
        if uid != self.datasource_uid:
            self.structure(
                name,
                "%s: datasource uid %r, expected the provisioned %r"
                % (where, uid, self.datasource_uid),
            )

    def check_structure(self, name, dashboard):
        if not isinstance(dashboard, dict):
            self.structure(name, "not a JSON object")
            return
        for key, kind in (("title", str), ("uid", str), ("panels", list), ("templating", dict)):
            if not isinstance(dashboard.get(key), kind) or not dashboard.get(key):
                self.structure(name, "top-level %r missing or not a non-empty %s" % (key, kind.__name__))
        if self.datasource_uid is None:
            self.structure(name, "no provisioned datasource uid to check against")
        templating = dashboard.get("templating") or {}
        for variable in templating.get("list") or []:
            if variable.get("type") == "query":
                self.check_datasource(
                    name, "variable $%s" % variable.get("name"), variable.get("datasource")
                )
                if variable.get("datasource") is None:
                    self.structure(name, "variable $%s has no datasource" % variable.get("name"))
        for panel in panels(dashboard.get("panels")):
            title = panel.get("title") or "(untitled)"
            where = "panel %r" % title
            if not panel.get("type"):
                self.structure(name, "%s has no type" % where)
            grid = panel.get("gridPos")
            if not isinstance(grid, dict) or not all(
                isinstance(grid.get(k), int) for k in ("h", "w", "x", "y")
            ):
                self.structure(name, "%s has no gridPos {h, w, x, y}" % where)
            self.check_datasource(name, where, panel.get("datasource"))
            if panel.get("type") == "row":
                continue
            targets = panel.get("targets") or []
            good = [
                t
                for t in targets
                if t.get("refId") and isinstance(t.get("expr"), str) and t["expr"].strip()
            ]
            if not good:
                self.structure(name, "%s has no target with a refId and an expr" % where)
            for target in targets:
                self.check_datasource(
                    name, "%s target %s" % (where, target.get("refId")), target.get("datasource")
                )
                if target.get("datasource") is None and panel.get("datasource") is None:
                    self.structure(
                        name, "%s target %s has no datasource" % (where, target.get("refId"))
                    )

    # -- one dashboard --------------------------------------------------------------------

    def check(self, path, structure):
        name = os.path.basename(path)
        try:
            with open(path, encoding="utf-8") as file:
                dashboard = json.load(file)
        except (OSError, ValueError) as error:
            self.structure(name, "cannot read: %s" % error)
            return
        print("== %s (%s)" % (name, dashboard.get("title", "untitled")), flush=True)
        if structure:
            self.check_structure(name, dashboard)
            if not isinstance(dashboard, dict):
                return
        values = self.resolve_variables(name, dashboard)
        self.expressions(name, dashboard, values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prometheus", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--cluster", required=True, help="warren's rabbitmq_cluster label")
    parser.add_argument("--datasource-uid", help="uid of the provisioned Prometheus datasource")
    parser.add_argument("--dashboard", action="append", default=[], help="repository dashboard")
    parser.add_argument("--reference", action="append", default=[], help="reference dashboard")
    args = parser.parse_args()

    checker = Checker(Prometheus(args.prometheus), args.cluster, args.datasource_uid)
    if not args.dashboard and not args.reference:
        checker.failures.append("no dashboards given")
    uids = {}
    for path in args.dashboard:
        checker.check(path, structure=True)
        try:
            with open(path, encoding="utf-8") as file:
                uid = json.load(file).get("uid")
        except (OSError, ValueError, AttributeError):
            uid = None
        if uid and uid in uids:
            checker.structure(
                os.path.basename(path), "uid %r is also %s's" % (uid, os.path.basename(uids[uid]))
            )
        uids.setdefault(uid, path)
    for path in args.reference:
        checker.check(path, structure=False)

    counts = checker.counts
    print(
        "\n%d OK, %d EMPTY, %d ERROR" % (counts["OK"], counts["EMPTY"], counts["ERROR"]),
        flush=True,
    )
    if checker.failures:
        print("\nFAILURES (%d):" % len(checker.failures))
        for failure in checker.failures:
            print("  " + failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
