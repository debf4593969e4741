"""Reports, rendered from run records and the history only: the terminal table,
the Markdown summary for pull requests, and the offline HTML trend report
(``html``: latest run, change points, trends, charts as inline SVG).

JUnit properties are written by the plugin (``perfsuite.testitem``), on each
test's report.
"""
