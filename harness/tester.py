"""The public face: `from harness.tester import VLMTester`. The engine lives in
harness/run/tester.py; this name stays so scripts written against it keep working."""

from harness.run.tester import VLMTester

__all__ = ["VLMTester"]
