"""Study summaries: the engine behind `summary/<study>` and `quant-dag report <study>` (no Dagster here).

For a memory budget, which variant keeps the most accuracy, and does it think longer? The pieces:
- tables: read a study's artifacts (benchmark summaries and records, endpoint facts, precision layouts) into
  StudyData; one tidy long table; wide views (accuracy, recovery, cutoff, reasoning, memory, paired vs base);
- stats: paired comparison of a variant with its base on the same samples (bootstrap CI, exact McNemar);
- charts: PNG charts (matplotlib, Agg), each returns its path or None when there is nothing to draw;
- report: a self-contained report folder (summary.md, report.html, PNGs, every table as parquet and csv).

Missing data is explicit everywhere: a suite never materialized, or not evaluated (with the reason), is a row
with a note, never a silent gap."""
