"""Small helpers below every other subpackage (the command-line wrapper, process groups, the schema,
precision settings)."""
