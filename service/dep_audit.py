"""Known advisories for the installed packages, read from PyPI's project JSON (issue 11, RELIABILITY.md).

``pip-audit`` is the audit the project runs (dev extra). From this machine it cannot work: it asks
PyPI's per-version JSON API (``/pypi/<name>/<version>/json``), which answers 404 here, and OSV, which
does not resolve; it then skips every package and still prints "No known vulnerabilities found".
What does answer is the project JSON (``/pypi/<name>/json``). Its ``vulnerabilities`` key holds the
advisories (PyPA's advisory database, the data pip-audit's PyPI service reads) that affect the
project's *latest* release. So this check is exact for every installed package that is the latest
release, and says nothing about an older one: those are listed as not checked, never as clean.

    .venv/bin/python -m service.dep_audit            # a table; exit 1 if any advisory, 2 if nothing could be checked
    .venv/bin/python -m service.dep_audit --json
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from importlib import metadata

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

PYPI_JSON = "https://pypi.org/pypi"


@dataclass
class Result:
    name: str
    installed: str
    #: ``clean`` / ``vulnerable`` (the latest release, advisories checked), ``older`` (not checked:
    #: a newer release exists), ``not-on-index`` (404: a local package), ``error``
    status: str
    latest: str | None = None
    advisories: list[dict] = field(default_factory=list)
    detail: str = ""


def installed() -> dict[str, str]:
    """Canonical name → version of every distribution in this interpreter's environment."""
    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def _same(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def check_one(name: str, version: str, base_url: str = PYPI_JSON, timeout_s: float = 20.0) -> Result:
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/{name}/json", timeout=timeout_s) as response:
            project = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return Result(name, version, "not-on-index", detail="404 from the index: not a PyPI project")
        return Result(name, version, "error", detail=f"HTTP {exc.code}")
    except (OSError, ValueError) as exc:
        return Result(name, version, "error", detail=f"{type(exc).__name__}: {exc}"[:200])
    latest = str(project.get("info", {}).get("version", ""))
    if not _same(version, latest):
        return Result(name, version, "older", latest, detail="a newer release exists; its advisories are not this one's")
    advisories = [{k: v.get(k) for k in ("id", "aliases", "summary", "fixed_in", "link")}
                  for v in project.get("vulnerabilities") or [] if not v.get("withdrawn")]
    return Result(name, version, "vulnerable" if advisories else "clean", latest, advisories)


def audit(packages: dict[str, str], base_url: str = PYPI_JSON, workers: int = 8) -> dict:
    """Check every ``name → version``; returns the results and the counts per status."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda item: check_one(item[0], item[1], base_url), sorted(packages.items())))
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return {"index": base_url, "packages": len(results), "counts": counts,
            "checked": counts.get("clean", 0) + counts.get("vulnerable", 0),
            "results": [asdict(r) for r in results]}


def exit_code(report: dict) -> int:
    if report["counts"].get("vulnerable"):
        return 1
    return 0 if report["checked"] else 2


def format_report(report: dict) -> str:
    lines = [f"{report['packages']} installed packages, index {report['index']}: "
             + ", ".join(f"{n} {s}" for s, n in sorted(report["counts"].items())),
             f"advisories checked for {report['checked']} (the latest release of their project)"]
    for r in report["results"]:
        if r["status"] == "vulnerable":
            for a in r["advisories"]:
                lines.append(f"  VULNERABLE {r['name']} {r['installed']}: {a['id']} {a.get('aliases') or ''} "
                             f"fixed in {a.get('fixed_in') or '?'} — {a.get('summary') or ''}")
    for r in report["results"]:
        if r["status"] in ("older", "error"):
            lines.append(f"  not checked: {r['name']} {r['installed']}"
                         + (f" (latest {r['latest']})" if r["latest"] else "") + f" — {r['detail']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the JSON report")
    parser.add_argument("--index-url", default=PYPI_JSON, help="base of the project JSON API")
    args = parser.parse_args(argv)
    report = audit(installed(), args.index_url)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return exit_code(report)


if __name__ == "__main__":
    sys.exit(main())
