"""Cross-validation runs: the fold pipeline, its events, the coordinator, the report, the final model.

Nothing here but the fold pipeline and the final model imports torch; the coordinator and the
report read files only.
"""
