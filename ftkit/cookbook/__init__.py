"""The cookbook's tooling: notebook helpers, the papermill batch runner and report, assertion evals, twins."""
