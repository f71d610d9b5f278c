"""Small helpers below every other subpackage."""
