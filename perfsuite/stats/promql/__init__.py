"""A PromQL subset evaluated over scraped series: pure, no clock, no network."""

from perfsuite.stats.promql.evaluate import (
    AGGREGATIONS,
    FUNCTIONS,
    Evaluator,
    Value,
    parse,
    selected_names,
    step_times,
)
from perfsuite.stats.promql.expect import (
    Expectation,
    ExpectVerdict,
    judge,
    judge_values,
)
from perfsuite.stats.promql.series import NAME, Labels, Series, SeriesSet, Vector, labels_of

__all__ = [
    "AGGREGATIONS",
    "FUNCTIONS",
    "NAME",
    "Evaluator",
    "ExpectVerdict",
    "Expectation",
    "Labels",
    "Series",
    "SeriesSet",
    "Value",
    "Vector",
    "judge",
    "judge_values",
    "labels_of",
    "parse",
    "selected_names",
    "step_times",
]
