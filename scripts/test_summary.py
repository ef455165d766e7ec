"""Prints a per-label summary of a ctest run, ending with the line 'N passed, N failed, N skipped'.

Usage: test_summary.py <build dir> <junit report> <seconds>
Outcomes come from ctest's JUnit report, labels from `ctest --show-only=json-v1`.
"""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET


def labels_by_test(build: str) -> dict:
    out = subprocess.run(["ctest", "--test-dir", build, "--show-only=json-v1"],
                         check=True, capture_output=True, text=True).stdout
    labels = {}
    for test in json.loads(out).get("tests", []):
        for prop in test.get("properties", []):
            if prop.get("name") == "LABELS":
                labels[test["name"]] = ",".join(prop.get("value", []))
    return labels


def outcome(case: ET.Element) -> str:
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    if case.find("skipped") is not None or case.get("status") in ("notrun", "disabled"):
        return "skipped"
    return "passed"


def main(build: str, junit: str, seconds: str) -> None:
    labels = labels_by_test(build)
    counts, failed = {}, []
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name")
        result = outcome(case)
        if result == "failed":
            failed.append(name)
        per = counts.setdefault(labels.get(name, "unlabelled"), {"passed": 0, "failed": 0, "skipped": 0})
        per[result] += 1
    total = {"passed": 0, "failed": 0, "skipped": 0}
    print(f"\n== Naiad test summary ({seconds} s) ==")
    for label in sorted(counts):
        c = counts[label]
        print(f"  {label:12} {c['passed']:4} passed {c['failed']:4} failed {c['skipped']:4} skipped")
        for key in total:
            total[key] += c[key]
    for name in failed:
        print(f"  FAILED: {name}")
    print(f"{total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")


if __name__ == "__main__":
    main(*sys.argv[1:4])
