"""Test-endpoint scenarios: scripted calls with audio and DTMF expectations and a verdict
per step, for `softphone call --scenario` and `softphone answer --scenario`.

``spec`` reads and checks the TOML file, ``audio`` judges what arrives, ``runner`` drives
the phone through its commands and events, ``report`` writes JUnit XML.
"""

from .spec import STEP_KINDS, Scenario, ScenarioError, Step, load_scenario, parse_scenario

__all__ = ["STEP_KINDS", "Scenario", "ScenarioError", "Step", "load_scenario",
           "parse_scenario"]
