"""Exceptions that cross module boundaries; the CLI turns UserError into one line on stderr."""


class UserError(Exception):
    """A mistake the user can fix (missing path, empty query, no index): no traceback."""


class ModelUnavailable(Exception):
    """A space's weights cannot be found; files of that space wait as `pending`."""


class DecodeError(Exception):
    """A file cannot be decoded; the message becomes the file's recorded reason."""


class Skip(Exception):
    """A file is deliberately not indexed (binary, too large); the message is the reason."""
