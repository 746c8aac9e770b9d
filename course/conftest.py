# course/dist/ is build output (python -m course build): never collect its notebooks as tests.
collect_ignore = ["dist"]
