"""Serving runtimes that follow a package index (vLLM nightlies).

`index` reads a PEP 503 "simple" index (http(s):// or file://) and picks the newest build of a project;
`envs` installs one build into its own cached virtual environment, so a new nightly can be evaluated
while the previous runtime keeps serving. Neither module imports Dagster: a thin layer calls them.
"""
