#!/usr/bin/env python3
"""Writes the golden corpus of malformed and hostile protocol files.

Each case is a file text with the marker « where the diagnostic must point, and a fragment of the
expected message. The file written starts with `# expect: LINE:COLUMN fragment`; the test
(GoldenCorpusTests) validates every file against the example lab's drivers and checks that some
diagnostic sits exactly there and says that. Run it again after adding a case:
    python3 Tests/LabSpecTests/Corpus/generate.py
"""
import os, re

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = """serendip: 1
name: base
instruments:
  reactor: thermo-reactor
  spectro: uv-vis
parameters:
  temperature: { type: real, unit: degC, range: [25, 120] }
  residence: { type: real, unit: min, range: [1, 30] }
steps:
  - set: reactor.setpoint
    to: $temperature
  - wait_until: { channel: reactor.temperature, of: $temperature, within: 0.5 degC, timeout: 20 min }
  - hold: $residence
  - measure: { channel: spectro.absorbance, as: absorbance, repeat: 3, every: 2 s }
outputs:
  yield: mean(absorbance) * 41.2
"""

# Campaign files name the shipped protocol and lab, relative to this directory.
CAMPAIGN = """serendip: 1
campaign: corpus
protocol: ../../../protocols/reactor-yield.yaml
lab: ../../../examples/toy-lab/lab.yaml
seed: 3
"""
SWEEP = CAMPAIGN + """sweep:
  replicates: 2
  vary:
    temperature: [60 degC, 70 degC, 80 degC]
    residence: { from: 5 min, to: 25 min, points: 5 }
"""
OPTIMIZE = CAMPAIGN + """optimize:
  maximize: yield
  budget: 30
  initial_points: 6
  constraints:
    - $temperature + 2 degC/min * $residence <= 150 degC
"""

def m(old, new, base=BASE):
    assert old in base, old
    return base.replace(old, new, 1)

def nest(levels, indent):
    """`levels` repeat loops of 10,000, each inside the one before."""
    if levels == 0:
        return "log: x\n"
    return f"repeat: 10000\n{indent}  steps:\n{indent}    - " + nest(levels - 1, indent + "    ")

def steps(body):
    """The base header with other steps."""
    return BASE[:BASE.index("steps:\n")] + "steps:\n" + body

CASES = [
    # --- top level
    ("missing-version", m("serendip: 1\n", "") .replace("name: base", "«name: base", 1), "missing 'serendip'"),
    ("future-version", m("serendip: 1", "serendip: «7"), "language version 7"),
    ("version-not-number", m("serendip: 1", "serendip: «one"), "whole number"),
    ("missing-name", m("name: base\n", "").replace("serendip: 1\n", "«serendip: 1\n", 1), "missing 'name'"),
    ("missing-steps", BASE[:BASE.index("steps:")].replace("serendip", "«serendip", 1) + "outputs:\n  n: 1\n", "missing 'steps'"),
    ("misspelt-top-key", m("steps:\n", "«stesp:\n"), "unknown key 'stesp'"),
    ("unknown-top-key", m("outputs:\n", "«colour: blue\noutputs:\n"), "unknown key 'colour'"),
    ("duplicate-top-key", m("outputs:\n", "«name: again\noutputs:\n"), "duplicate key 'name'"),
    ("duplicate-key-in-flow", m("{ type: real, unit: min, range: [1, 30] }", "{ type: real, unit: min, «unit: h, range: [1, 30] }"), "duplicate key 'unit'"),
    ("top-is-list", "«- serendip: 1\n", "must be a mapping"),
    ("top-is-scalar", "«hello\n", "must be a mapping"),
    ("empty-file", "", "file is empty", (1, 1)),
    ("only-comments", "# nothing here\n", "file is empty", (1, 1)),
    ("steps-not-list", steps("  «set: reactor.setpoint\n  to: 20 degC\n"), "must be a list of steps"),
    ("instruments-list", m("  reactor: thermo-reactor\n  spectro: uv-vis\n", "  «- reactor\n"), "must be a mapping"),
    ("outputs-list", m("  yield: mean(absorbance) * 41.2\n", "  «- yield\n"), "must be a mapping"),
    # --- instruments and channels
    ("unknown-driver", m("reactor: thermo-reactor", "reactor: «thermo-reactr"), "no driver file for 'thermo-reactr'"),
    ("unknown-role", m("  - set: reactor.setpoint", "  - set: «reactr.setpoint"), "unknown instrument 'reactr'"),
    ("unknown-channel", m("  - set: reactor.setpoint", "  - set: «reactor.setpiont"), "unknown channel 'reactor.setpiont'"),
    ("channel-without-dot", m("  - set: reactor.setpoint", "  - set: «setpoint"), "must name instrument.channel"),
    ("channel-two-dots", m("  - set: reactor.setpoint", "  - set: «reactor.set.point"), "must name instrument.channel"),
    ("write-read-only", m("  - set: reactor.setpoint", "  - set: «reactor.temperature"), "read-only"),
    ("wait-unknown-channel", m("{ channel: reactor.temperature, of", "{ channel: «reactor.temprature, of"), "unknown channel"),
    ("measure-unknown-channel", m("channel: spectro.absorbance", "channel: «spectro.absorbence"), "unknown channel"),
    ("measure-write-only", steps("  - measure: { channel: «pump.dispense }\n").replace("  spectro: uv-vis\n", "  spectro: uv-vis\n  pump: syringe-pump\n"), "cannot be read"),
    ("channel-as-list", m("  - set: reactor.setpoint", "  - set: «[reactor, setpoint]"), "must be a single value"),
    # --- steps
    ("unknown-step", m("  - hold: $residence", "  - «hodl: $residence"), "unknown step 'hodl'"),
    ("two-actions", m("  - hold: $residence", "  - «hold: $residence\n    log: also"), "does exactly one thing"),
    ("step-is-scalar", m("  - hold: $residence", "  - «hold"), "must be a mapping"),
    ("set-missing-to", m("  - set: reactor.setpoint\n    to: $temperature\n", "  - «set: reactor.setpoint\n"), "missing 'to'"),
    ("set-extra-key", m("    to: $temperature\n", "    to: $temperature\n    «speed: fast\n"), "unknown key 'speed'"),
    ("wait-missing-timeout", m(", timeout: 20 min }", " }").replace("  - wait_until: {", "  - wait_until: «{", 1), "missing 'timeout'"),
    ("wait-missing-of", m("of: $temperature, within", "within").replace("  - wait_until: {", "  - wait_until: «{", 1), "missing 'of'"),
    ("wait-bad-on-timeout", m("timeout: 20 min }", "timeout: 20 min, on_timeout: «retry }"), "unknown on_timeout 'retry'"),
    ("wait-typo-key", m("within: 0.5 degC", "«withn: 0.5 degC"), "unknown key 'withn'"),
    ("measure-repeat-zero", m("repeat: 3", "repeat: «0"), "whole number from 1"),
    ("measure-repeat-huge", m("repeat: 3", "repeat: «1000000"), "whole number from 1"),
    ("measure-repeat-fraction", m("repeat: 3", "repeat: «2.5"), "whole number"),
    ("measure-until-no-repeat", m("as: absorbance, repeat: 3, every: 2 s }", "as: absorbance, every: 2 s, until: «last(absorbance) > 1 }"), "needs 'repeat'"),
    ("measure-until-number", m("every: 2 s }", "every: 2 s, until: «last(absorbance) }"), "expected a condition"),
    ("if-missing-then", m("  - hold: $residence", "  - «if: $temperature > 50 degC"), "missing 'then'"),
    ("if-not-condition", m("  - hold: $residence", "  - if: «$temperature\n    then:\n      - log: hot"), "expected a condition"),
    ("then-not-list", m("  - hold: $residence", "  - if: $temperature > 50 degC\n    then: «hot"), "must be a list of steps"),
    ("log-is-list", m("  - hold: $residence", "  - log: «[a, b]"), "must be a single value"),
    ("annotate-not-mapping", m("  - hold: $residence", "  - annotate: «note"), "must be a mapping"),
    ("parallel-one-branch", m("  - hold: $residence", "  - parallel: «[[{ hold: 1 s }]]"), "at least two branches"),
    ("parallel-shared-instrument", m("  - hold: $residence", "  - parallel:\n      - - set: reactor.stirrer\n          to: true\n      - «- set: reactor.setpoint\n          to: 30 degC"), "both use 'reactor'"),
    ("repeat-zero", m("  - hold: $residence", "  - repeat: «0\n    steps:\n      - log: x"), "whole number from 1"),
    ("repeat-too-many", m("  - hold: $residence", "  - repeat: «20000\n    steps:\n      - log: x"), "whole number from 1 to 10000"),
    ("repeat-missing-steps", m("  - hold: $residence", "  - «repeat: 3"), "missing 'steps'"),
    ("repeat-until-number", m("  - hold: $residence", "  - repeat: 3\n    steps:\n      - log: x\n    until: «$temperature"), "expected a condition"),
    ("nested-loops-explode", m("  - hold: $residence", "  - «repeat: 10000\n    steps:\n      - repeat: 10000\n        steps:\n          - log: x"), "at most 1000000"),
    ("deeply-nested-loops-explode", m("  - hold: $residence", "  - «" + nest(10, "  ")), "at most 1000000"),
    ("foreach-missing-as", m("  - hold: $residence", "  - «for_each: [1, 2]\n    steps:\n      - log: x"), "missing 'as'"),
    ("foreach-empty", m("  - hold: $residence", "  - for_each: «[]\n    as: x\n    steps:\n      - log: x"), "non-empty list"),
    ("foreach-mixed", m("  - hold: $residence", "  - for_each: «[20 degC, 5 mL]\n    as: x\n    steps:\n      - log: x"), "all be of one kind"),
    ("foreach-shadows", m("  - hold: $residence", "  - for_each: [20 degC]\n    as: «temperature\n    steps:\n      - log: x"), "already a parameter"),
    ("loop-var-out-of-scope", m("  - hold: $residence", "  - for_each: [20 degC]\n    as: t\n    steps:\n      - log: x\n  - set: reactor.setpoint\n    to: «$t"), "unknown parameter '$t'"),
    ("loop-var-over-limit", m("  - hold: $residence", "  - for_each: [20 degC, 200 degC]\n    as: t\n    steps:\n      - set: reactor.setpoint\n        to: «$t"), "outside the limits"),
    ("include-missing-file", m("  - hold: $residence", "  - include: «no-such-file.yaml"), "cannot include"),
    ("include-device", m("  - hold: $residence", "  - include: «/dev/zero"), "not a regular file"),
    ("include-self", m("  - hold: $residence", "  - include: «SELF"), "includes itself"),
    ("ramp-no-rate", m("  - hold: $residence", "  - ramp: «{ channel: reactor.setpoint, to: 50 degC }"), "missing 'rate'"),
    ("ramp-rate-wrong-unit", m("  - hold: $residence", "  - ramp: { channel: reactor.setpoint, to: 50 degC, rate: «2 degC }"), "expected a temperature/time"),
    ("ramp-bool-channel", m("  - hold: $residence", "  - ramp: «{ channel: reactor.stirrer, to: true, rate: 1 degC/min }"), "cannot ramp"),
    ("checkpoint-list", m("  - hold: $residence", "  - checkpoint: «[a]"), "must be a single value"),
    # --- units, types, limits
    ("set-volume-to-temperature", m("    to: $temperature", "    to: «40 mL"), "expected a temperature"),
    ("set-over-limit", m("    to: $temperature", "    to: «200 degC"), "outside the limits"),
    ("set-below-limit", m("    to: $temperature", "    to: «-5 degC"), "outside the limits"),
    ("set-fahrenheit-over-limit", m("    to: $temperature", "    to: «400 degF"), "outside the limits"),
    ("parameter-range-over-limit", m("range: [25, 120] }", "range: [25, 160] }").replace("    to: $temperature", "    to: «$temperature"), "outside the limits"),
    ("set-bool-to-number", m("  - hold: $residence", "  - set: reactor.stirrer\n    to: «1"), "expected a condition"),
    ("set-number-to-bool", m("    to: $temperature", "    to: «true"), "expected a temperature"),
    ("hold-no-unit", m("  - hold: $residence", "  - hold: «5"), "needs a time unit"),
    ("hold-temperature", m("  - hold: $residence", "  - hold: «5 degC"), "expected a time"),
    ("every-in-mL", m("every: 2 s }", "every: «2 mL }"), "expected a time"),
    ("timeout-unknown-unit", m("timeout: 20 min", "timeout: 20 «furlongs"), "unknown unit 'furlongs'"),
    ("within-volume", m("within: 0.5 degC", "within: «0.5 mL"), "expected a temperature"),
    ("unknown-unit", m("    to: $temperature", "    to: 40 «degc"), "unknown unit 'degc'"),
    ("unit-typo-parameter", m("unit: degC, range: [25, 120]", "unit: «celsius, range: [25, 120]"), "unknown unit 'celsius'"),
    ("add-temperature-volume", m("    to: $temperature", "    to: «$temperature + 5 mL"), "mixes a temperature"),
    ("compare-text-number", m("  - hold: $residence", "  - if: «$temperature == \"hot\"\n    then:\n      - log: x"), "cannot combine"),
    ("and-of-numbers", m("  - hold: $residence", "  - if: «$temperature and $residence\n    then:\n      - log: x"), "joins conditions"),
    ("not-of-number", m("  - hold: $residence", "  - if: «not $temperature\n    then:\n      - log: x"), "expected a condition"),
    ("convert-wrong-dimension", m("  yield: mean(absorbance) * 41.2", "  yield: «mean(absorbance) in K"), "cannot express"),
    ("output-text", m("  yield: mean(absorbance) * 41.2", "  yield: «'\"good\"'"), "must be a number or a condition"),
    ("output-quoted-name", m("  yield: mean(absorbance) * 41.2", "  yield: «\"good\""), "'good' is not measured"),
    # --- expressions
    ("expr-trailing-operator", m("    to: $temperature", "    to: $temperature +«"), "found end of expression"),
    ("expr-unclosed-paren", m("  yield: mean(absorbance) * 41.2", "  yield: (mean(absorbance) * 41.2«"), "expected ')'"),
    ("expr-unknown-function", m("  yield: mean(absorbance) * 41.2", "  yield: «average(absorbance) * 41.2"), "unknown function 'average'"),
    ("expr-function-of-number", m("  yield: mean(absorbance) * 41.2", "  yield: mean(«3)"), "takes the name of a measured series"),
    ("expr-unmeasured-series", m("  yield: mean(absorbance) * 41.2", "  yield: «mean(absorbanc) * 41.2"), "not measured"),
    ("expr-unknown-parameter", m("    to: $temperature", "    to: «$temprature"), "unknown parameter '$temprature'"),
    ("expr-bare-dollar", m("    to: $temperature", "    to: «$"), "must be followed by a parameter name"),
    ("expr-bad-character", m("    to: $temperature", "    to: $temperature «@ 2"), "unexpected character '@'"),
    ("expr-hash-is-a-comment", m("    to: $temperature", "    to:« # $temperature"), "has no value"),
    ("expr-unclosed-string", m("  - hold: $residence", "  - if: $temperature == «'hot\n    then:\n      - log: x"), "string is not closed"),
    ("expr-two-values", m("    to: $temperature", "    to: 25 degC «30"), "unexpected"),
    ("expr-deep-nesting", m("    to: $temperature", "    to: " + "(" * 32 + "«" + "(" * 48 + "1" + ")" * 80), "nested too deeply"),
    ("expr-many-minus", m("    to: $temperature", "    to: " + "-" * 64 + "«" + "-" * 400 + "1 degC"), "nested too deeply"),
    ("expr-in-without-unit", m("  yield: mean(absorbance) * 41.2", "  yield: mean(absorbance) in «3"), "expected a unit"),
    ("expr-used-before-measured", m("  - hold: $residence", "  - if: «count(absorbance) > 2\n    then:\n      - log: early"), "not measured"),
    # --- parameters
    ("param-unknown-type", m("{ type: real, unit: min", "{ type: «float, unit: min"), "unknown parameter type 'float'"),
    ("param-no-range", m("residence: { type: real, unit: min, range: [1, 30] }", "residence: «{ type: real, unit: min }"), "missing 'range'"),
    ("param-range-reversed", m("range: [1, 30]", "range: «[30, 1]"), "is above high"),
    ("param-range-one-value", m("range: [1, 30]", "range: «[30]"), "pair [low, high]"),
    ("param-range-nan", m("range: [1, 30]", "range: [«.nan, 30]"), "finite number"),
    ("param-range-infinite", m("range: [1, 30]", "range: [1, «.inf]"), "finite number"),
    ("param-range-text", m("range: [1, 30]", "range: [«one, 30]"), "finite number"),
    ("param-log-zero", m("residence: { type: real, unit: min, range: [1, 30] }", "residence: { type: real, unit: min, log: true, range: «[0, 30] }"), "above zero"),
    ("param-default-out-of-range", m("range: [1, 30] }", "range: [1, 30], default: «45 min }"), "outside"),
    ("param-default-wrong-unit", m("range: [1, 30] }", "range: [1, 30], default: «45 mL }"), "cannot convert"),
    ("param-integer-fraction-range", m("residence: { type: real, unit: min, range: [1, 30] }", "residence: { type: integer, range: «[1.5, 30] }"), "whole numbers"),
    ("param-choice-empty", m("residence: { type: real, unit: min, range: [1, 30] }", "residence: { type: choice, values: «[] }"), "non-empty list"),
    ("param-choice-duplicate", m("residence: { type: real, unit: min, range: [1, 30] }", "residence: { type: choice, values: «[a, a] }"), "listed twice"),
    ("param-choice-bad-default", m("residence: { type: real, unit: min, range: [1, 30] }", "residence: { type: choice, values: [a, b], default: «c }"), "must be one of"),
    ("param-bool-bad-default", m("residence: { type: real, unit: min, range: [1, 30] }", "residence: { type: boolean, default: «maybe }"), "true or false"),
    ("param-typo-key", m("range: [1, 30] }", "range: [1, 30], «defualt: 5 min }"), "unknown key 'defualt'"),
    ("param-not-mapping", m("residence: { type: real, unit: min, range: [1, 30] }", "residence: «5 min"), "must be a mapping"),
    # --- YAML-level and hostile input
    ("yaml-unclosed-flow", m("reactor: thermo-reactor\n  spectro: uv-vis", "reactor: [thermo\n  spectro«: uv-vis"), "did not find expected ',' or ']'"),
    ("yaml-bad-indent", m("  - hold: $residence", "  - hold: $residence\n   «- log: x"), "YAML syntax"),
    ("yaml-tab-indent", m("  - hold: $residence", "«\t- hold: $residence"), "does not allow tabs"),
    ("yaml-undefined-alias", m("    to: $temperature", "    to: «*nowhere"), "undefined alias"),
    ("yaml-two-documents", BASE + "«---\nserendip: 1\n", "YAML syntax"),
    ("yaml-list-as-key", m("  - hold: $residence", "  - «[hold, wait]: $residence"), "must be a plain name"),
    ("yaml-duplicate-anchor-key", m("  spectro: uv-vis", "  spectro: &u uv-vis\n  «spectro: *u"), "duplicate key 'spectro'"),
    ("yaml-deep-flow", m("  yield: mean(absorbance) * 41.2", "  yield: " + "[" * 98 + "«" + "[" * 52 + "]" * 150), "nested more than 100"),
    ("yaml-deep-block", m("  - hold: $residence", "  - hold:\n" + "".join("  " * (i + 3) + ("«" if i == 97 else "") + f"k{i}:\n" for i in range(99)) + "  " * 102 + "k99: 1"), "nested more than 100"),
    ("yaml-alias-bomb", "«a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n" + BASE, "unknown key 'a'"),
    ("yaml-alias-bomb-in-steps", BASE.replace("steps:\n", "x: &s [{ log: a }, { log: a }, { log: a }, { log: a }, { log: a }, { log: a }, { log: a }, { log: a }, { log: a }, { log: a }]\nsteps:\n").replace("x: &s", "«x: &s"), "unknown key 'x'"),
    ("crlf-line-endings", m("  - hold: $residence", "  - hold: «5").replace("\n", "\r\n"), "needs a time unit"),
    ("bom-then-error", "\ufeff" + m("  - hold: $residence", "  - hold: «5"), "needs a time unit"),
    ("duplicate-step-key", m("    to: $temperature", "    to: $temperature\n    «to: 30 degC"), "duplicate key 'to'"),
    ("duplicate-parameter", m("  residence: { type", "  residence: { type: real, unit: min, range: [1, 2] }\n  «residence: { type"), "duplicate key 'residence'"),
    ("nan-literal-in-set", m("    to: $temperature", "    to: «nan degC"), "is not allowed"),
    ("infinity-literal", m("    to: $temperature", "    to: -«inf"), "is not allowed"),
    ("huge-number-literal", m("    to: $temperature", "    to: «1e400 degC"), "is not a number"),
    ("control-characters", m("    to: $temperature", "    to: «\u0007"), "control characters"),
    # Campaign files: sweeps and optimisation, checked against the protocol they name.
    ("campaign-sweep-explodes", m("  vary:", "  «vary:", SWEEP).replace("residence: { from: 5 min, to: 25 min, points: 5 }", "residence: { from: 5 min, to: 25 min, points: 10000 }").replace("replicates: 2", "replicates: 1000").replace("[60 degC, 70 degC, 80 degC]", "{ from: 30 degC, to: 110 degC, points: 10000 }"), "expands to 1E11 runs"),
    ("campaign-sweep-unknown-parameter", m("    residence:", "    «residense:", SWEEP), "did you mean 'residence'"),
    ("campaign-sweep-value-outside-range", m("70 degC", "«170 degC", SWEEP), "outside 25.0…120.0"),
    ("campaign-sweep-wrong-dimension", m("70 degC", "«70 min", SWEEP), "cannot convert"),
    ("campaign-sweep-empty-list", m("[60 degC, 70 degC, 80 degC]", "«[]", SWEEP), "at least one value"),
    ("campaign-sweep-linspace-no-points", m("from: 5 min, to: 25 min, points: 5 }", "from: 5 min, to: 25 min }", SWEEP).replace("residence: {", "residence: «{"), "missing 'points'"),
    ("campaign-sweep-lhs-list", m("  replicates: 2", "  design: latin_hypercube\n  points: 10", SWEEP).replace("temperature: [", "temperature: «["), "must be a mapping"),
    ("campaign-sweep-lhs-no-points", m("  replicates: 2", "  «design: latin_hypercube", SWEEP), "missing 'points'"),
    ("campaign-sweep-bad-design", m("  replicates: 2", "  design: «sobol", SWEEP), "use grid or latin_hypercube"),
    ("campaign-fixed-and-swept", SWEEP.replace("seed: 3\n", "seed: 3\nfixed: { temperature: 50 degC }\n").replace("    temperature: [", "    «temperature: ["), "both fixed and varied"),
    ("campaign-sweep-missing-default", m("    residence: { from: 5 min, to: 25 min, points: 5 }\n", "", SWEEP).replace("  vary:", "  «vary:"), "$residence has no default"),
    ("campaign-both-plans", SWEEP + "«optimize: { maximize: yield, budget: 3 }\n", "not both"),
    ("campaign-no-plan", "«" + CAMPAIGN, "neither 'sweep' nor 'optimize'"),
    ("campaign-no-version", m("serendip: 1\n", "", SWEEP).replace("campaign: corpus", "«campaign: corpus"), "missing 'serendip'"),
    ("campaign-unknown-key", m("seed: 3", "seed: 3\n«budget: 20", SWEEP), "unknown key 'budget'"),
    ("campaign-missing-protocol-file", m("../../../protocols/reactor-yield.yaml", "«../../../protocols/no-such-protocol.yaml", SWEEP), "cannot read"),
    ("campaign-objective-not-an-output", m("maximize: yield", "maximize: «yeild", OPTIMIZE), "did you mean 'yield'"),
    ("campaign-no-objective", m("  maximize: yield\n", "", OPTIMIZE).replace("optimize:", "«optimize:"), "needs an objective"),
    ("campaign-initial-above-budget", m("initial_points: 6", "initial_points: «60", OPTIMIZE), "more than the budget"),
    ("campaign-batch-too-big", m("  budget: 30", "  budget: 30\n  batch_size: «1000", OPTIMIZE), "from 1 to 100"),
    ("campaign-bad-on-failure", m("  budget: 30", "  budget: 30\n  on_failure: «retry", OPTIMIZE), "use avoid, worst, stop"),
    ("campaign-bad-initial-design", m("  budget: 30", "  budget: 30\n  initial_design: «grid", OPTIMIZE), "use sobol, latin_hypercube, random"),
    ("campaign-constraint-not-linear", m("    - $temperature + 2 degC/min * $residence <= 150 degC", "    - «$temperature * $residence / 1 min <= 1500 degC", OPTIMIZE), "not linear"),
    ("campaign-constraint-impossible", m("    - $temperature + 2 degC/min * $residence <= 150 degC", "    - «$temperature >= 130 degC", OPTIMIZE), "no values inside"),
    ("campaign-constraint-dimensions", m("    - $temperature + 2 degC/min * $residence <= 150 degC", "    - «$temperature + $residence <= 150 degC", OPTIMIZE), "cannot"),
    ("campaign-constraint-not-comparison", m("    - $temperature + 2 degC/min * $residence <= 150 degC", "    - «$temperature + 2 degC", OPTIMIZE), "compares two sides"),
    ("campaign-outcome-constraint-unknown", m("    - $temperature + 2 degC/min * $residence <= 150 degC", "    - «purity >= 95", OPTIMIZE), "no output 'purity'"),
    ("campaign-target-two-objectives", CAMPAIGN.replace("reactor-yield", "dispense-and-measure") + "optimize:\n  maximize: dispensed_mass\n  minimize: error_percent\n  budget: 20\n  stop: { «target: 4 }\n", "single objective"),
    ("campaign-unknown-noise", m("  budget: 30", "  budget: 30\n  noise: «gaussian", OPTIMIZE), "use inferred, noise_free"),
    ("campaign-unknown-acquisition", m("  budget: 30", "  budget: 30\n  acquisition: «thompson", OPTIMIZE), "use log_ei or ucb"),
    ("campaign-objective-twice", m("maximize: yield", "maximize: yield\n  minimize: «yield", OPTIMIZE), "already an objective"),
    # --- writes known to leave a channel's limits (constant, or for some parameter values)
    ("set-zero-over-zero", m("    to: $temperature", "    to: «0/0"), "is not a finite number"),
    ("set-divide-by-zero", m("    to: $temperature", "    to: «1 degC / 0"), "is not a finite number"),
    ("set-overflow", m("    to: $temperature", "    to: «1e300*1e300*1 degC"), "is not a finite number"),
    ("set-product-past-limit", m("  residence:", "  a: { type: real, range: [1, 16] }\n  b: { type: real, unit: degC, range: [1, 15] }\n  residence:").replace("    to: $temperature", "    to: «$a * $b"), "reaches 240 degC at $a = 16.0, $b = 15.0 degC, outside the limits 0…150 degC of 'reactor.setpoint'"),
    ("set-always-past-limit", m("    to: $temperature", "    to: «$temperature + 200 degC"), "is 225…320 degC for the allowed values of $temperature, always outside the limits"),
    ("set-divide-by-range-with-zero", m("  residence:", "  r: { type: real, range: [0, 2] }\n  residence:").replace("    to: $temperature", "    to: «100 degC / $r"), "divides by a value that can be zero"),
]

def main():
    for name in os.listdir(HERE):
        if name.endswith(".yaml"):
            os.remove(os.path.join(HERE, name))
    for index, (slug, text, fragment, *position) in enumerate(CASES, 1):
        filename = f"{index:03d}-{slug}.yaml"
        text = text.replace("SELF", filename)
        assert text.count("«") == (0 if position else 1), slug
        header = f"# expect: LINE:COLUMN {fragment}\n"
        # A byte-order mark stays first in its file; the header follows it.
        full = "\ufeff" + header + text[1:] if text.startswith("\ufeff") else header + text
        if position:  # a whole-file problem: its position is given, not marked
            with open(os.path.join(HERE, filename), "w", encoding="utf-8", newline="") as f:
                f.write(full.replace("LINE:COLUMN", f"{position[0][0]}:{position[0][1]}", 1))
            continue
        offset = full.index("«")
        before = full[:offset]
        line = before.count("\n") + 1
        start = before.rfind("\n") + 1
        column = len(before[start:].replace("\r", "")) + 1   # libyaml counts Unicode scalars
        full = full.replace("«", "", 1).replace("LINE:COLUMN", f"{line}:{column}", 1)
        with open(os.path.join(HERE, filename), "w", encoding="utf-8", newline="") as f:
            f.write(full)
    print(f"{len(CASES)} files")

if __name__ == "__main__":
    main()
