"""The one error type of the data layer: it always names the file, and the record when there is one."""


class DataError(ValueError):
    """Bad input data (json, image file, annotation), raised before any DataLoader worker sees it."""
