"""One exception type for every problem a user can fix; the CLI turns it into one line."""


class MigfwError(Exception):
    """A user-facing error: bad input file, bad config, missing prerequisite.

    The message must stand alone on one line (name the file or key and the problem).
    """
